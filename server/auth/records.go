package auth

import (
	"strings"

	pocnetv1 "github.com/pocnet/pocnet/proto/pocnet/v1"
)

// RecordService is called by the node's own operators, like ContactService.
const recordPrefix = "/pocnet.v1.RecordService/"

// adminOnly are the methods only the admin of the node's own state may
// call, with what they decide: disclosing a thread outside the two states,
// or changing the directory (the state's own entry, its keys, or a vote on
// the federation's changes), is a decision of the state, never of one PoC.
var adminOnly = map[string]string{
	recordPrefix + "RequestDisclosure":                   "disclosing a thread",
	recordPrefix + "ConsentDisclosure":                   "disclosing a thread",
	pocnetv1.DirectoryService_UpdateEntry_FullMethodName: "changing the directory",
	pocnetv1.DirectoryService_RotateKeys_FullMethodName:  "changing the directory",
	pocnetv1.DirectoryService_Propose_FullMethodName:     "changing the directory",
	pocnetv1.DirectoryService_Sign_FullMethodName:        "changing the directory",
	pocnetv1.DirectoryService_Object_FullMethodName:      "changing the directory",
}

// service returns the short name of the service of a full method name,
// e.g. "RecordService" for "/pocnet.v1.RecordService/ExportThread".
func service(method string) string {
	s := strings.TrimPrefix(method, "/pocnet.v1.")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	return s
}
