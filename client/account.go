package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NormalizeAccount is the form of an account name that the server knows:
// account names are lower case, so `BOB` and `Bob` name bob.
func NormalizeAccount(name string) string {
	return strings.ToLower(strings.TrimSpace(name))
}

// ErrOtherAccount: login as another account on a profile that belongs to
// someone; its messages would be shown as the new account's.
var ErrOtherAccount = errors.New("this profile belongs to another account")

// guardAccount refuses a login as another account than the profile's,
// unless force; with force it clears the local store (after the new login
// succeeded, see clearStore). It reports whether the store must be
// cleared.
func guardAccount(home, account string, force bool) (bool, error) {
	p, _, err := loadProfile(home)
	if errors.Is(err, ErrNoProfile) {
		return false, nil
	}
	if err != nil {
		if !force {
			return false, fmt.Errorf("%w; log in with --force to start this profile over", err)
		}
		return true, nil
	}
	if p.Account == account {
		return false, nil
	}
	if !force {
		return false, fmt.Errorf("%w (%s): log in as %s with another --home, or add --force to delete %s's messages from %s",
			ErrOtherAccount, p.Account, account, p.Account, home)
	}
	return true, nil
}

// clearStore deletes the local message store of a profile (and what a run
// left), so that a new account starts with an empty history. It refuses
// while a `sealpost run` uses the profile.
func clearStore(home string) error {
	if runActive(home) {
		return errors.New("a sealpost run is using this profile; stop it first")
	}
	for _, name := range []string{storeFile, storeFile + "-wal", storeFile + "-shm", socketFile} {
		if err := os.Remove(filepath.Join(home, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clear the local store: %w", err)
		}
	}
	return nil
}

// runActive reports whether a `sealpost run` answers on the profile's socket.
func runActive(home string) bool {
	conn, err := net.DialTimeout("unix", filepath.Join(home, socketFile), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
