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

// exampleAdminConfig is an admin operator of the first state: directory
// changes are signed with the state's key, and only admins ask for them.
var exampleAdminConfig = "admin/pocctl.yaml"

// The directory examples are compiled but not run: the test federation's
// nodes do not serve DirectoryService yet.

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

	// Page through the whole chain, newest first.
	var before uint64
	for {
		h, err := c.DirectoryHistory(ctx, before, 100)
		if err != nil {
			log.Fatal(err)
		}
		if before == 0 {
			fmt.Printf("version %d in force\n", h.GetHead().GetVersion())
			// A fork is two valid versions with one parent: someone must
			// look at it, it is never resolved silently.
			for _, f := range h.GetForks() {
				fmt.Printf("FORK at version %d, signed both: %s\n", f.GetVersion(), strings.Join(f.GetEquivocators(), ", "))
			}
		}
		for _, v := range h.GetVersions() {
			fmt.Printf("%d  %s  %s  signed by %s\n", v.GetVersion(), v.GetIssuedAt().AsTime().UTC().Format(time.RFC3339),
				v.GetDescription(), strings.Join(v.GetSigners(), ", "))
		}
		if len(h.GetVersions()) < 100 {
			return
		}
		before = h.GetVersions()[len(h.GetVersions())-1].GetVersion()
	}
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
	fmt.Println(v.GetDescription(), "is version", v.GetVersion())
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
	p, err := c.FindProposal(ctx, "1a2b3c4d")
	switch {
	case errors.Is(err, client.ErrNoProposal):
		fmt.Println("not here yet: the proposal reaches every node by gossip")
		return
	case errors.Is(err, client.ErrAmbiguousProposal):
		log.Fatal(err) // the message names the candidates; give more digits
	case err != nil:
		log.Fatal(err)
	}
	if p.GetState() != pocnetv1.ProposalState_PROPOSAL_STATE_PENDING {
		fmt.Println(p.GetDescription(), "is", client.ProposalStateName(p.GetState()))
		return
	}
	p, err = c.SignProposal(ctx, p.GetHash())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d of %d signatures under %s\n", p.GetDescription(), len(p.GetSigned()), p.GetNeeded(), p.GetRule())
}
