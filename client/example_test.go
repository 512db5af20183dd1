package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/pocnet/pocnet/client"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// The examples run against a federation started by TestMain: the sender is
// a technical operator of the first state, the recipient one of the second.
var (
	exampleConfig          = "pocctl.yaml"
	exampleRecipientConfig = "recipient/pocctl.yaml"
	exampleTo              = "XBB"
)

func ExampleDial() {
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
	fmt.Println("connected as", c.Identity().Kind, "of", c.Identity().State, "role", c.Identity().Role)
	// Output: connected as operator of XAA role technical
}

func ExampleClient_Send() {
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

	kind, err := client.ParseKind("rfi")
	if err != nil {
		log.Fatal(err)
	}
	req := &pocnetv1.SendCommunicationRequest{
		ToState: exampleTo,
		ToRole:  "technical",
		Communication: &pocnetv1.Communication{
			Kind:         kind,
			Urgency:      pocnetv1.Urgency_URGENCY_URGENT,
			Subject:      "Scanning from 203.0.113.0/24",
			Body:         "We see scanning of energy-sector hosts from this range. Do you see it too?",
			Language:     "en",
			HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_ONWARD_DISSEMINATION,
			Exercise:     true,
		},
	}
	m, err := c.Send(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	// Send set a request id; sending the same request again returns the
	// same message and creates nothing new.
	again, err := c.Send(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(client.StatusName(m.GetStatus()), m.GetId() == again.GetId())
	// Output: ACCEPTED true
}

func ExampleClient_Watch() {
	cfg, err := client.LoadConfig(exampleRecipientConfig)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Stop at the first message received. A real tool keeps the last seq it
	// handled and passes it to Watch after a restart.
	errFound := errors.New("found")
	var last uint64
	err = c.Watch(ctx, 0, func(ev *pocnetv1.Event) error {
		last = ev.GetSeq()
		if ev.GetType() == pocnetv1.EventType_EVENT_TYPE_MESSAGE_RECEIVED {
			fmt.Println("received", client.KindName(ev.GetMessage().GetCommunication().GetKind()), "from", ev.GetMessage().GetFromState())
			return errFound
		}
		return nil
	})
	if !errors.Is(err, errFound) {
		log.Fatal(err)
	}
	fmt.Println("handled up to event", last > 0)
	// Output:
	// received rfi from XAA
	// handled up to event true
}

func ExampleClient_Respond() {
	cfg, err := client.LoadConfig(exampleRecipientConfig)
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

	inbox, err := c.ListAll(ctx, pocnetv1.Direction_DIRECTION_INBOUND, false)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range inbox {
		if m.GetType() != pocnetv1.EnvelopeType_ENVELOPE_TYPE_COMMUNICATION {
			continue
		}
		resp, err := c.Respond(ctx, m.GetId(), &pocnetv1.Communication{
			Kind:         m.GetCommunication().GetKind(),
			Urgency:      m.GetCommunication().GetUrgency(),
			Subject:      "Re: " + m.GetCommunication().GetSubject(),
			Body:         "Yes, we see it too and are blocking the range.",
			Language:     "en",
			HandlingCode: pocnetv1.HandlingCode_HANDLING_CODE_NO_RESTRICTION,
			Exercise:     m.GetCommunication().GetExercise(),
		}, "")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(client.EnvelopeTypeWords(resp.GetType()), "in reply to the communication:", resp.GetInReplyTo() == m.GetId())
		return
	}
	// Output: response in reply to the communication: true
}
