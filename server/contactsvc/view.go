package contactsvc

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// checkView refuses a view that is none of MessageView's values. It is
// called before anything is done, so that a refused request stores nothing.
func checkView(v pocnetv1.MessageView) error {
	switch v {
	case pocnetv1.MessageView_MESSAGE_VIEW_UNSPECIFIED, pocnetv1.MessageView_MESSAGE_VIEW_BASIC, pocnetv1.MessageView_MESSAGE_VIEW_FULL:
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "view: %d is not a message view; use MESSAGE_VIEW_BASIC or MESSAGE_VIEW_FULL", int32(v))
}

// applyView cuts each message down to view. The messages themselves must
// be this request's own, as the exchange returns them; their communications
// are replaced, never changed.
func applyView(v pocnetv1.MessageView, ms ...*pocnetv1.Message) {
	if v != pocnetv1.MessageView_MESSAGE_VIEW_BASIC {
		return
	}
	for _, m := range ms {
		c := m.GetCommunication()
		if c == nil {
			continue
		}
		// A new Communication, not c cut down: c may be shared, since the
		// exchange's cache of recent messages holds the communication a
		// send or a response carried, to deliver and to show it again.
		m.Communication = &pocnetv1.Communication{
			Kind: c.GetKind(), Urgency: c.GetUrgency(), Subject: c.GetSubject(), Language: c.GetLanguage(),
			RespondBy: c.GetRespondBy(), HandlingCode: c.GetHandlingCode(), Exercise: c.GetExercise(),
		}
	}
}
