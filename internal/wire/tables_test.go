package wire_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rso-server/rso/internal/wire"
)

// The codes are one table: docs/PROTOCOL.md documents each of them, and the TypeScript SDK knows each of
// them and no other, so that a code added or renamed here fails until both follow.
func TestCodesMatchProtocolAndSDK(t *testing.T) {
	doc, err := os.ReadFile("../../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := os.ReadFile("../../sdk-ts/src/codes.ts")
	if err != nil {
		t.Fatal(err)
	}
	// The values of its tables of server error codes (const …ErrorCode(s) = {…}; ClientErrorCode holds the
	// SDK's own).
	var sdkCodes []string
	for _, table := range regexp.MustCompile(`(?s)(?:export )?const (\w*?)[eE]rrorCodes? = \{(.*?)\n\}`).FindAllSubmatch(sdk, -1) {
		if string(table[1]) == "Client" {
			continue
		}
		for _, m := range regexp.MustCompile(`(?m)^\s+\w+: "([a-z_]+)",`).FindAllSubmatch(table[2], -1) {
			sdkCodes = append(sdkCodes, string(m[1]))
		}
	}
	if len(sdkCodes) == 0 {
		t.Fatal("no error-code table found in sdk-ts/src/codes.ts")
	}
	for _, c := range wire.Codes {
		if !strings.Contains(string(doc), "`"+c+"`") {
			t.Errorf("docs/PROTOCOL.md never names the code `%s`", c)
		}
		if c != wire.CodeLockExpired && !slices.Contains(sdkCodes, c) { // lock_expired: server API only
			t.Errorf("sdk-ts/src/codes.ts has no code %q", c)
		}
	}
	for _, c := range sdkCodes {
		if !slices.Contains(wire.Codes, c) {
			t.Errorf("sdk-ts/src/codes.ts has %q, which the server never sends", c)
		}
	}
}
