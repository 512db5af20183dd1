package node_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wantCode(t *testing.T, err error, code string, msgPart string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code().String() != code || !strings.Contains(st.Message(), msgPart) {
		t.Fatalf("got %v (code %v), want %s containing %q", err, st.Code(), code, msgPart)
	}
	if st.Code() == codes.Unknown {
		t.Fatalf("codes.Unknown leaked: %v", err)
	}
}
