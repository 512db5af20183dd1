package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pocnet/pocnet/client"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The directory examples run against the federation TestMain starts, in
// this order: the history, then the signature that adopts the proposal
// TestMain had the second state make, then an entry update (which would
// supersede the proposal if it came first).
var (
	// exampleAdminConfig is an admin operator of the first state:
	// directory changes are signed with the state's key, and only admins
	// ask for them.
	exampleAdminConfig = "admin/pocctl.yaml"
	// exampleProposal is the start of the hash of a proposal the second
	// state made, as its operators would read it out.
	exampleProposal = "1a2b3c4d"
)

func ExampleClient_DirectoryHistory() {
	cfg, err := client.LoadConfig(exampleConfig)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Page through the whole chain, newest first, down to the genesis.
	var before uint64
	var oldest *pocnetv1.VersionSummary
	for {
		h, err := c.DirectoryHistory(ctx, before, 100)
		if err != nil {
			log.Fatal(err)
		}
		if before == 0 {
			// A fork is two valid versions with one parent: someone must
			// look at it, it is never resolved silently.
			for _, f := range h.GetForks() {
				fmt.Printf("FORK at version %d, signed both: %s\n", f.GetVersion(), strings.Join(f.GetEquivocators(), ", "))
			}
		}
		for _, v := range h.GetVersions() {
			oldest = v
		}
		if len(h.GetVersions()) < 100 {
			break
		}
		before = h.GetVersions()[len(h.GetVersions())-1].GetVersion()
	}
	fmt.Printf("version %d: %s, signed by %s\n", oldest.GetVersion(), oldest.GetDescription(), strings.Join(oldest.GetSigners(), ", "))
	// Output: version 1: genesis, signed by XAA, XBB
}

func ExampleClient_FindProposal() {
	cfg, err := client.LoadConfig(exampleAdminConfig)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Another state proposed a change and sent its hash around; sign it
	// with the first digits, as people read them out to each other.
	p, err := c.FindProposal(ctx, exampleProposal)
	switch {
	case errors.Is(err, client.ErrNoProposal):
		fmt.Println("not here yet: the proposal reaches every node by gossip")
		return
	case errors.Is(err, client.ErrAmbiguousProposal):
		log.Fatal(err) // the message names the candidates; give more digits
	case err != nil:
		log.Fatal(err)
	}
	if p.GetState() == pocnetv1.ProposalState_PROPOSAL_STATE_PENDING {
		p, err = c.SignProposal(ctx, p.GetHash())
		if err != nil {
			log.Fatal(err)
		}
	}
	// With both states' signatures, the change is in force.
	fmt.Println(p.GetDescription(), "is", client.ProposalStateName(p.GetState()))
	// Output: rule change is adopted
}

func ExampleClient_UpdateEntry() {
	cfg, err := client.LoadConfig(exampleAdminConfig)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Edit the state's own entry as it stands in the version in force, and
	// name that version: if someone else changed the entry meanwhile, the
	// node refuses rather than overwrite their change.
	cur, err := c.DirectoryVersion(ctx, 0)
	if err != nil {
		log.Fatal(err)
	}
	state := c.Identity().State
	i := slices.IndexFunc(cur.GetVersion().GetDirectory().GetMembers(), func(m *pocnetv1.Member) bool { return m.GetState() == state })
	if i < 0 {
		log.Fatalf("%s is not in the directory", state)
	}
	entry := proto.Clone(cur.GetVersion().GetDirectory().GetMembers()[i]).(*pocnetv1.Member)
	for _, p := range entry.GetPointsOfContact() {
		if p.GetRole() == "technical" {
			p.Languages = []string{"en", "fr", "es"}
		}
	}
	v, err := c.UpdateEntry(ctx, entry, cur.GetVersion().GetVersion())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.GetDescription(), "signed by", strings.Join(v.GetSigners(), ", "))
	// Output: entry update of XAA signed by XAA
}
