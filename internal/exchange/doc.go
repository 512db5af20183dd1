// Package exchange owns the life of communications at one node: accepting a
// communication from the state's own operators, receiving envelopes from
// peer nodes under the state's published policy, answering (acknowledge,
// respond, decline) only when an operator chooses to, the sender's status
// trail, and the event log operators watch.
//
// Every transition is one store.Update, committed durably before anything is
// acknowledged. This package never answers on a state's behalf: silence is a
// legitimate outcome, transport receipts are technical facts, and the
// recipient's local state (new, read, archived) never leaves the node. It
// never imports gRPC: errors are the sentinels of errors.go.
package exchange
