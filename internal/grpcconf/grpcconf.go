// Package grpcconf holds the gRPC transport settings every pocnet
// connection uses, on both ends: node to node, and a state's tools to its
// node.
//
// The HTTP/2 flow-control windows are fixed instead of left to gRPC's
// bandwidth-delay estimator. The estimator answers data frames it samples
// with a PING that the other side must answer: on a connection that carries
// one small message at a time, as PoC traffic mostly does, that is extra
// frames, with their reads and writes, for nearly every message. Measured
// with internal/bench (1 KiB messages, two nodes, 2 cores), the one-sender
// run made 7 write and 10 read system calls per message instead of 17 and
// 30, and at 64 senders pocnet's CPU per message fell from 377-404 to
// 360-364 µs and its throughput rose from 4448-4789 to 4862-4953 messages/s
// (two rounds each, with a 4 MiB call window; with the 16 MiB below a
// later run gave 4818 messages/s and 363 µs). The windows are as large as the estimator may grow
// them (16 MiB), so that a large delivery over a long path is not slowed: a
// window only bounds what the sender may have in flight, it allocates
// nothing, and no message may be larger anyway.
package grpcconf

import "google.golang.org/grpc"

const (
	// StreamWindow is the flow-control window of one call.
	StreamWindow = 16 << 20
	// ConnWindow is the flow-control window of one connection, shared by
	// its calls.
	ConnWindow = 16 << 20
)

// ServerOptions returns the transport options of a server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow)}
}

// DialOptions returns the transport options of a client connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow)}
}
