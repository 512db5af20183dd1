// Command pocnode runs a state's pocnet node.
//
//	pocnode --config pocnode.yaml
//
// It stops gracefully on SIGINT or SIGTERM, and reloads its data keys and
// its certificate on SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pocnet/pocnet/internal/datakey"
	"github.com/pocnet/pocnet/server/config"
	"github.com/pocnet/pocnet/server/node"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("pocnode", flag.ContinueOnError)
	path := fs.String("config", "pocnode.yaml", "path of the node's configuration file")
	check := fs.Bool("check", false, "validate the configuration, directory and certificate, then exit")
	addKey := fs.Bool("add-data-key", false, "append a new current key to data_key_file, then exit; send SIGHUP to the running node to use it")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pocnode: %v\n", err)
		return 2
	}
	if *addKey {
		if cfg.DataKeyFile == "" {
			fmt.Fprintf(os.Stderr, "pocnode: --add-data-key: data_key_file is not set; the keys come from %s, which the node's operator edits\n", datakey.EnvVar)
			return 2
		}
		r, err := datakey.Add(cfg.DataKeyFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pocnode: --add-data-key: %v\n", err)
			return 1
		}
		fmt.Printf("pocnode: data key %s added to %s and now current; send SIGHUP to the running node\n", r.Current(), cfg.DataKeyFile)
		return 0
	}
	log, err := newLogger(cfg.Log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pocnode: log: %v\n", err)
		return 2
	}
	defer log.Sync()
	if *check {
		cfg.Listen = "127.0.0.1:0"
	}
	// A participant the members have not admitted yet waits in Start,
	// asking their nodes for the directory; SIGINT or SIGTERM ends the wait.
	startCtx, cancelStart := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	if *check {
		cancelStart()
	}
	n, err := node.Start(node.Options{Config: cfg, Logger: log, Context: startCtx})
	signalled := !*check && startCtx.Err() != nil
	cancelStart()
	if err != nil {
		if signalled && errors.Is(err, context.Canceled) {
			// Stopping a node that waits to be admitted is a normal stop:
			// nothing was served, and the store keeps what was fetched.
			log.Info("signal received while waiting to be admitted; stopping", zap.Error(err))
			return 0
		}
		fmt.Fprintf(os.Stderr, "pocnode: cannot start: %v\n", err)
		return 1
	}
	if *check {
		n.Stop()
		fmt.Println("pocnode: configuration, directory, certificate and store are valid")
		return 0
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				// Data key rotation without downtime: add a key to the key
				// file (it becomes current), then send SIGHUP.
				if err := n.ReloadDataKeys(); err != nil {
					log.Error("data keys not reloaded; the node keeps the keys it had", zap.Error(err))
				}
				// Certificate renewal: new files in place, then SIGHUP (the
				// node also notices them by itself within seconds).
				if err := n.ReloadCertificates(); err != nil {
					log.Error("certificate not reloaded; the node keeps the one it has", zap.Error(err))
				}
				continue
			}
			log.Info("signal received; stopping", zap.Stringer("signal", s))
			n.Stop()
			return 0
		case err := <-n.Done():
			log.Error("server stopped", zap.Error(err))
			n.Stop()
			return 1
		}
	}
}

func newLogger(c config.Log) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(c.Level); err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	return zc.Build()
}
