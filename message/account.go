package message

import (
	"fmt"
	"regexp"
)

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CheckAccount reports whether name is a valid account name:
// [a-z0-9][a-z0-9._-]{0,63}. An account's SIP address is sip:NAME@DOMAIN.
func CheckAccount(name string) error {
	if !accountName.MatchString(name) {
		return fmt.Errorf("invalid account name %q: use 1 to 64 of a-z 0-9 . _ - starting with a letter or digit", name)
	}
	return nil
}
