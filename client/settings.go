package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Settings are the device's rules. The defaults are the manual's numbers;
// every one can be changed per profile (sealpost settings NAME VALUE).
type Settings struct {
	// AttemptTimeout bounds one submission attempt, TLS handshake included
	// (the manual's "TLSTimeout", 12 s). A round gives each attempt a slot
	// this long: the next attempt starts when the slot ends, so a round of
	// fast failures (connection refused) still spans 5 × 12 s = 60 s instead
	// of hammering a server that is restarting.
	AttemptTimeout Duration `json:"attempt_timeout"`
	// RoundAttempts is the number of attempts in one round (5). After a
	// failed round a message waits for a trigger: (re)registration, a
	// keepalive sent, or the user sending another message.
	RoundAttempts int `json:"round_attempts"`
	// QueueLifetime is how long a message may wait in the device's queue
	// (12 h); then it becomes Error and a "Send error" notification fires.
	QueueLifetime Duration `json:"queue_lifetime"`
	// Validity is how long the device keeps a message's text (72 h); then
	// the text is erased for good and the history shows "Message sent" or
	// "Message received".
	Validity Duration `json:"validity"`
	// Persistent keeps texts past Validity.
	Persistent bool `json:"persistent"`
	// NotifyText shows a received message's text in its notification
	// ("alice: Hello Bob 👋"); false shows only who sent one, for screens
	// others can see.
	NotifyText bool `json:"notify_text"`
	// KeepaliveInterval is the spacing of CRLF keepalives on the SIP flow
	// (60 s); each one sent is also a retry trigger.
	KeepaliveInterval Duration `json:"keepalive_interval"`
	// KeepaliveTimeout is how long to wait for the answer to a keepalive
	// before the flow counts as dead (RFC 5626 §4.4.1 says 10 s).
	KeepaliveTimeout Duration `json:"keepalive_timeout"`
	// RegisterExpires is the registration lifetime asked for (600 s); the
	// client refreshes at three quarters of what the server grants.
	RegisterExpires Duration `json:"register_expires"`
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reach the SIP server: it doubles from 1 s to 30 s, and each wait is
	// drawn between half the backoff and the backoff (jitter), so the first
	// is under a second and a restarted server sees its devices back within
	// half a minute, not all in the same second.
	ReconnectMin Duration `json:"reconnect_min"`
	ReconnectMax Duration `json:"reconnect_max"`
}

// DefaultSettings returns the manual's numbers.
func DefaultSettings() Settings {
	return Settings{
		AttemptTimeout:    Duration(12 * time.Second),
		RoundAttempts:     5,
		QueueLifetime:     Duration(12 * time.Hour),
		Validity:          Duration(72 * time.Hour),
		KeepaliveInterval: Duration(60 * time.Second),
		KeepaliveTimeout:  Duration(10 * time.Second),
		RegisterExpires:   Duration(600 * time.Second),
		ReconnectMin:      Duration(time.Second),
		ReconnectMax:      Duration(30 * time.Second),
		NotifyText:        true,
	}
}

// Check reports the first setting that makes no sense.
func (s Settings) Check() error {
	positive := map[string]Duration{
		"attempt_timeout": s.AttemptTimeout, "queue_lifetime": s.QueueLifetime,
		"validity": s.Validity, "keepalive_interval": s.KeepaliveInterval,
		"keepalive_timeout": s.KeepaliveTimeout, "register_expires": s.RegisterExpires,
		"reconnect_min": s.ReconnectMin, "reconnect_max": s.ReconnectMax,
	}
	for _, name := range sortedKeys(positive) {
		if positive[name] <= 0 {
			return fmt.Errorf("setting %s must be a positive duration, not %s", name, positive[name])
		}
	}
	if s.RoundAttempts < 1 {
		return fmt.Errorf("setting round_attempts must be at least 1, not %d", s.RoundAttempts)
	}
	if s.ReconnectMax < s.ReconnectMin {
		return fmt.Errorf("setting reconnect_max (%s) is below reconnect_min (%s)", s.ReconnectMax, s.ReconnectMin)
	}
	if s.RegisterExpires < Duration(10*time.Second) {
		return fmt.Errorf("setting register_expires must be at least 10s, not %s", s.RegisterExpires)
	}
	return nil
}

// Duration is a time.Duration written as "12s", "72h0m0s" in settings.json.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "90s"-style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"12s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

const settingsFile = "settings.json"

// loadSettings reads the profile's settings over the defaults; a missing
// file means the defaults.
func loadSettings(home string) (Settings, error) {
	s := DefaultSettings()
	b, err := os.ReadFile(filepath.Join(home, settingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read settings: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read settings %s: %w", filepath.Join(home, settingsFile), err)
	}
	return s, s.Check()
}

func saveSettings(home string, s Settings) error {
	if err := s.Check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFile0600(filepath.Join(home, settingsFile), append(b, '\n'))
}

// SettingNames lists the names accepted by SetSetting, sorted.
func SettingNames() []string {
	m := settingsMap(DefaultSettings())
	return sortedKeys(m)
}

// SettingsList returns every setting as name → value text.
func (s Settings) List() map[string]string { return settingsMap(s) }

func settingsMap(s Settings) map[string]string {
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// Set changes one setting by name from its text form ("12s", "5", "true").
func (s *Settings) Set(name, value string) error {
	known := settingsMap(*s)
	if _, ok := known[name]; !ok {
		return fmt.Errorf("unknown setting %q; known: %s", name, strings.Join(sortedKeys(known), ", "))
	}
	var raw string
	switch name {
	case "round_attempts":
		if _, err := strconv.Atoi(value); err != nil {
			return fmt.Errorf("setting %s wants a whole number, not %q", name, value)
		}
		raw = value
	case "persistent", "notify_text":
		v, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("setting %s wants true or false, not %q", name, value)
		}
		raw = strconv.FormatBool(v)
	default:
		if _, err := time.ParseDuration(value); err != nil {
			return fmt.Errorf("setting %s wants a duration like 12s or 72h, not %q", name, value)
		}
		raw = strconv.Quote(value)
	}
	next := *s
	if err := json.Unmarshal([]byte(`{"`+name+`":`+raw+`}`), &next); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	if err := next.Check(); err != nil {
		return err
	}
	*s = next
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
