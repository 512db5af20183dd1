package pocctl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pocnet/pocnet/client"
	"github.com/pocnet/pocnet/internal/identity"
	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

func (a *app) inboxCmd() *cobra.Command {
	var all, archived bool
	cmd := &cobra.Command{
		Use:   "inbox [--all | --archived]",
		Short: "List inbound messages (new and read; --archived: archived ones; --all: all)",
		Args:  exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if all && archived {
				return usagef("--all and --archived cannot be used together (--all already includes archived messages)")
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				msgs, err := c.ListAll(ctx, pocnetv1.Direction_DIRECTION_INBOUND, all || archived)
				if err != nil {
					return err
				}
				if archived {
					kept := msgs[:0]
					for _, m := range msgs {
						if m.GetLocalState() == pocnetv1.LocalState_LOCAL_STATE_ARCHIVED {
							kept = append(kept, m)
						}
					}
					msgs = kept
				}
				if a.json() {
					return a.printJSON(&pocnetv1.ListMessagesResponse{Messages: msgs}, false)
				}
				return writeInbox(a.env.Stdout, msgs, a.now())
			})
		}),
	}
	cmd.Flags().BoolVar(&all, "all", false, "list all inbound messages, archived ones included")
	cmd.Flags().BoolVar(&archived, "archived", false, "list only archived inbound messages")
	return cmd
}

func (a *app) sentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sent",
		Short: "List outbound messages and where each stands",
		Args:  exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				msgs, err := c.ListAll(ctx, pocnetv1.Direction_DIRECTION_OUTBOUND, false)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(&pocnetv1.ListMessagesResponse{Messages: msgs}, false)
				}
				return writeSent(a.env.Stdout, msgs, a.now())
			})
		}),
	}
}

func (a *app) showCmd() *cobra.Command {
	var keepNew bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a message in full; an inbound message is marked read (locally only)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.Get(ctx, args[0])
				if err != nil {
					return err
				}
				var markErr error
				if m.GetDirection() == pocnetv1.Direction_DIRECTION_INBOUND &&
					m.GetLocalState() == pocnetv1.LocalState_LOCAL_STATE_NEW && !keepNew {
					// Reading is recorded on this node only; nothing about it
					// is ever sent to the sender.
					if updated, err := c.SetLocalState(ctx, m.GetId(), pocnetv1.LocalState_LOCAL_STATE_READ); err != nil {
						markErr = err
					} else {
						m = updated
					}
				}
				if a.json() {
					if err := a.printJSON(m, false); err != nil {
						return err
					}
					return markErr
				}
				var answers []*pocnetv1.Message
				for _, id := range m.GetAnswerIds() {
					if am, err := c.Get(ctx, id); err == nil {
						answers = append(answers, am)
					}
				}
				if err := writeMessage(a.env.Stdout, m, answers, a.now()); err != nil {
					return err
				}
				return markErr
			})
		}),
	}
	cmd.Flags().BoolVar(&keepNew, "keep-new", false, "do not mark an inbound message read")
	return cmd
}

func (a *app) threadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "thread ID",
		Short: "Show the whole thread of a message as a conversation, oldest first",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				msgs, err := c.Thread(ctx, args[0])
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(&pocnetv1.GetThreadResponse{Messages: msgs}, false)
				}
				return writeThread(a.env.Stdout, msgs, a.now())
			})
		}),
	}
	cmd.AddCommand(a.threadExportCmd(), a.threadVerifyCmd())
	return cmd
}

func (a *app) ackCmd() *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   "ack ID [--note N]",
		Short: "Acknowledge an inbound communication (takes note of it; promises nothing)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.Acknowledge(ctx, args[0], note)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(m, false)
				}
				return writeSent1(a.env.Stdout, "Acknowledged with", m, "")
			})
		}),
	}
	cmd.Flags().StringVar(&note, "note", "", "optional short remark")
	return cmd
}

func (a *app) declineCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "decline ID [--reason R]",
		Short: "Decline an inbound communication, with an optional reason",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.Decline(ctx, args[0], reason)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(m, false)
				}
				return writeSent1(a.env.Stdout, "Declined with", m, "")
			})
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "optional reason; a state may decline without saying why")
	return cmd
}

func (a *app) archiveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "archive ID",
		Short: "Archive an inbound message (on your node only; nothing is sent)",
		Args:  exactArgs("ID"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				m, err := c.SetLocalState(ctx, args[0], pocnetv1.LocalState_LOCAL_STATE_ARCHIVED)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(m, false)
				}
				_, err = fmt.Fprintf(a.env.Stdout, "Archived %s (on your node only; nothing is sent)\n", m.GetId())
				return err
			})
		}),
	}
}

func (a *app) watchCmd() *cobra.Command {
	var after uint64
	cmd := &cobra.Command{
		Use:   "watch [--after SEQ]",
		Short: "Print events as they happen; survives node restarts (Ctrl-C to stop)",
		Long: `watch prints the node's events as they happen: messages received and status
changes of messages sent. It reconnects by itself when the node restarts or
the network fails and resumes where it stopped, without repeating or
missing an event. With --after it starts after that event seq (as printed
after '#'); 0 replays the whole log.`,
		Args: exactArgs(),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			// --timeout bounds connecting, not watching.
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if !a.json() {
				fmt.Fprintf(a.env.Stderr, "Watching events of %s after #%d as %s (Ctrl-C to stop)\n", c.Identity().State, after, c.Identity())
			}
			err = c.Watch(cmd.Context(), after, func(ev *pocnetv1.Event) error {
				if a.json() {
					return a.printJSON(ev, true)
				}
				return writeEvent(a.env.Stdout, ev, a.now())
			})
			if cmd.Context().Err() != nil {
				// Stopped by the operator: a normal end.
				return nil
			}
			return err
		}),
	}
	cmd.Flags().Uint64Var(&after, "after", 0, "start after this event seq")
	return cmd
}

func (a *app) policyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "policy STATE",
		Short: "Show which communications a state's points of contact accept, in which languages",
		Args:  exactArgs("STATE"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			state := strings.ToUpper(args[0])
			if err := identity.ValidateState(state); err != nil {
				return usagef("STATE: %v", err)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				p, err := c.Policy(ctx, state)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(p, false)
				}
				return writePolicy(a.env.Stdout, p)
			})
		}),
	}
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status [ID]",
		Short: "Show the node's status, or where message ID stands and its status trail",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("status takes at most one argument (a message ID), got %d", len(args))
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				if len(args) == 1 {
					m, err := c.Get(ctx, args[0])
					if err != nil {
						return err
					}
					if a.json() {
						return a.printJSON(m, false)
					}
					return writeMessageStatus(a.env.Stdout, m, a.now())
				}
				s, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(s, false)
				}
				return writeNodeStatus(a.env.Stdout, s, a.now())
			})
		}),
	}
}
