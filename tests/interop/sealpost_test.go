package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/internal/server/servertest"
	"github.com/sealpost/sealpost/message"
)

// sealpostUser is an account using the Sealpost client core (what the
// sealpost command runs): logged in, online over SIP with delivery reports,
// sending through its outbox.
type sealpostUser struct {
	name string
	core *client.Core
}

func startSealpostUser(t *testing.T, srv *servertest.Server, dir, name, password string) *sealpostUser {
	t.Helper()
	home := filepath.Join(dir, "sealpost-"+name)
	err := client.Login(context.Background(), client.LoginOptions{
		Home: home, Server: srv.HTTPSURL, Account: name, Password: password,
		CAFile: srv.CAFile, SIPAddr: srv.SIPAddr, Domain: srv.Domain,
	})
	if err != nil {
		t.Fatalf("sealpost login %s: %v", name, err)
	}
	core, err := client.Open(client.Options{Home: home, Logf: func(f string, a ...any) { t.Logf("sealpost "+name+": "+f, a...) }})
	if err != nil {
		t.Fatalf("opening sealpost profile %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = core.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; core.Close() })
	u := &sealpostUser{name: name, core: core}
	waitFor(t, 15*time.Second, "sealpost client "+name+" to be online", func() error {
		if core.Online() {
			return nil
		}
		return fmt.Errorf("not registered yet")
	})
	return u
}

// send sends text to peer from the client and returns the message id.
func (u *sealpostUser) send(t *testing.T, peer, text string) string {
	t.Helper()
	m, err := u.core.Send(context.Background(), peer, text)
	if err != nil {
		t.Fatalf("sealpost %s send to %s: %v", u.name, peer, err)
	}
	return m.ID
}

// waitStatus waits until the client shows the outgoing message id with
// status want.
func (u *sealpostUser) waitStatus(t *testing.T, timeout time.Duration, id string, want message.Status) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("sealpost %s to show message %s as %s", u.name, id, want), func() error {
		m, err := u.core.Message(context.Background(), id)
		if err != nil {
			return err
		}
		if m.Status != want {
			return fmt.Errorf("status is %s (attempts %d, last error %q)", m.Status, m.Attempts, m.LastError)
		}
		return nil
	})
}

// waitInHistory waits until the conversation with peer shows an incoming
// message with text, as `sealpost history PEER` would.
func (u *sealpostUser) waitInHistory(t *testing.T, timeout time.Duration, peer, text string) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("sealpost %s history with %s to show %q", u.name, peer, text), func() error {
		h, err := u.core.History(context.Background(), peer)
		if err != nil {
			return err
		}
		for _, m := range h {
			if !m.Outgoing && m.Peer == peer && m.Text == text {
				return nil
			}
		}
		return fmt.Errorf("history has %d messages, none incoming with that text", len(h))
	})
}

// apiUser sends through the HTTPS API directly, as any program could.
type apiUser struct {
	name  string
	srv   *servertest.Server
	token string
}

func newAPIUser(t *testing.T, srv *servertest.Server, name, password string) *apiUser {
	t.Helper()
	return &apiUser{name: name, srv: srv, token: srv.Token(t, name, password)}
}

// submit posts a message and expects 202 enqueued; it returns the id.
func (a *apiUser) submit(t *testing.T, to, text string) string {
	t.Helper()
	id := message.NewID()
	body, _ := json.Marshal(api.SubmitRequest{ID: id, To: to, Text: text})
	req, _ := http.NewRequest(http.MethodPost, a.srv.HTTPSURL+api.PathMessages, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := a.srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("POST %s as %s: %v", api.PathMessages, a.name, err)
	}
	defer res.Body.Close()
	var sr api.SubmitResponse
	_ = json.NewDecoder(res.Body).Decode(&sr)
	if res.StatusCode != http.StatusAccepted || sr.Status != string(message.Enqueued) {
		t.Fatalf("POST %s as %s to %s: status %d %q, want 202 enqueued", api.PathMessages, a.name, to, res.StatusCode, sr.Status)
	}
	return id
}

// status returns the server's status of a message the user sent.
func (a *apiUser) status(id string) (api.MessageStatus, error) {
	req, _ := http.NewRequest(http.MethodGet, a.srv.HTTPSURL+api.PathMessages+"/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	res, err := a.srv.HTTPClient().Do(req)
	if err != nil {
		return api.MessageStatus{}, err
	}
	defer res.Body.Close()
	var st api.MessageStatus
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET message %s: status %d", id, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET message %s: %w", id, err)
	}
	return st, nil
}

func (a *apiUser) waitStatus(t *testing.T, timeout time.Duration, id string, want message.Status) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("GET %s/%s to say %s", api.PathMessages, id, want), func() error {
		st, err := a.status(id)
		if err != nil {
			return err
		}
		if st.Status != string(want) {
			return fmt.Errorf("status is %s", st.Status)
		}
		return nil
	})
}
