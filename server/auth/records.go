package auth

import "strings"

// RecordService is called by the node's own operators, like ContactService.
const recordPrefix = "/pocnet.v1.RecordService/"

// adminOnly are the methods only the admin of the node's own state may
// call: disclosing a thread outside the two states is a decision of the
// state, never of one PoC.
var adminOnly = map[string]bool{
	recordPrefix + "RequestDisclosure": true,
	recordPrefix + "ConsentDisclosure": true,
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
