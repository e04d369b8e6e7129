package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/registrar"
	"github.com/sealpost/sealpost/internal/store"
)

// ControlSocket is the Unix socket, in the data folder, on which a running
// server answers the sealpostd commands run beside it in another process
// (mox's ctl socket): `user del` asks it to disconnect the deleted
// account's device, `user list` asks who is online. Only the data folder's
// owner reaches it (the folder is 0700, the socket 0600), and it acts only
// on what the store already says: it disconnects an account only once the
// account is gone from the store.
const ControlSocket = "sealpostd.sock"

// ErrNotRunning: no server answers on the data folder's control socket.
var ErrNotRunning = errors.New("no server is running on this data folder")

// controlRequest and controlResponse are one exchange on the socket: one
// JSON object each way, then the connection closes.
type controlRequest struct {
	Op      string   `json:"op"` // "disconnect" or "devices"
	Account string   `json:"account,omitempty"`
	Senders []string `json:"senders,omitempty"` // disconnect: accounts with a new failure report
}

type controlResponse struct {
	Error        string    `json:"error,omitempty"`
	Disconnected bool      `json:"disconnected,omitempty"`
	Devices      []Device  `json:"devices,omitempty"`
	Since        time.Time `json:"since"` // when the server started
}

// Device is an account's registration as a running server knows it.
type Device struct {
	Account        string    `json:"account"`
	Online         bool      `json:"online"`
	Source         string    `json:"source,omitempty"`
	LastRegistered time.Time `json:"last_registered"`
}

// presence remembers each account's last registration since the server
// started (the registrar forgets a binding when it ends).
type presence struct {
	mu   sync.Mutex
	last map[string]time.Time // guarded by mu
}

func (p *presence) registered(account string, at time.Time) {
	p.mu.Lock()
	if p.last == nil {
		p.last = map[string]time.Time{}
	}
	p.last[account] = at
	p.mu.Unlock()
}

func (p *presence) forget(account string) {
	p.mu.Lock()
	delete(p.last, account)
	p.mu.Unlock()
}

// startControl listens on the control socket. A socket file left by a
// server that died is replaced; one a live server answers on is an error.
func (s *Server) startControl() error {
	path := filepath.Join(s.o.DataDir, ControlSocket)
	if len(path) >= 104 { // sun_path holds 104-108 bytes
		s.log.Warn("data folder path too long for the control socket; user del and user list will not reach this server", "path", path)
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another server answers on this data folder's control socket", path)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.addListener(l) // closing it removes the socket file
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed by Shutdown
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveControl(c)
			}()
		}
	}()
	return nil
}

func (s *Server) serveControl(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req controlRequest
	res := controlResponse{Since: s.since}
	if err := json.NewDecoder(io.LimitReader(c, 4096)).Decode(&req); err != nil {
		res.Error = "bad request: " + err.Error()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		switch req.Op {
		case "disconnect":
			res.Disconnected, err = s.disconnectDeleted(ctx, req.Account, req.Senders)
		case "devices":
			res.Devices = s.devices()
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			res.Error = err.Error()
		}
	}
	_ = json.NewEncoder(c).Encode(res)
}

// disconnectDeleted ends the registration of an account that is no longer
// in the store and closes its device's connection; it drops what the
// server caches about the account, and starts the delivery of the failure
// reports its deletion queued for senders.
func (s *Server) disconnectDeleted(ctx context.Context, account string, senders []string) (bool, error) {
	if _, err := s.store.Account(ctx, account); err == nil {
		return false, fmt.Errorf("account %q still exists; only a deleted account is disconnected", account)
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	for _, sender := range senders {
		s.queue.Kick(sender)
	}
	online := s.dropDeleted(account)
	if s.cluster != nil {
		s.cluster.AccountDeleted(account) // the other nodes drop it too
	}
	return online, nil
}

// dropDeleted forgets what this node caches of a deleted account and
// closes its device's connection, if it is registered here; it reports
// whether it was.
func (s *Server) dropDeleted(account string) bool {
	s.forget(account)
	s.presence.forget(account)
	b, ok := s.registrar.Remove(account)
	s.log.Info("account deleted by the operator", "account", account, "device_online", ok)
	if !ok {
		return false
	}
	if err := s.sip.Disconnect(b.Source); err != nil {
		s.log.Warn("closing the deleted account's connection", "account", account, "source", b.Source, "err", err)
	}
	return true
}

// deletedElsewhere is the cluster's Deleted: another node's operator
// deleted the account. As on the control socket, only an account the
// store no longer holds is dropped.
func (s *Server) deletedElsewhere(account string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.store.Account(ctx, account); !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("ignoring another node's deletion of an account the store still holds (or could not be read)", "account", account, "err", err)
		return
	}
	s.dropDeleted(account)
}

// devices lists the accounts registered since the server started, online
// or not, by name.
func (s *Server) devices() []Device {
	s.presence.mu.Lock()
	out := make([]Device, 0, len(s.presence.last))
	for account, at := range s.presence.last {
		out = append(out, Device{Account: account, LastRegistered: at})
	}
	s.presence.mu.Unlock()
	for i := range out {
		if b, ok := s.registrar.Lookup(out[i].Account); ok {
			out[i].Online, out[i].Source = true, b.Source
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// logOffline is the registrar's OnOffline: one line per device going away.
func (s *Server) logOffline(b registrar.Binding, reason string) {
	s.log.Info("device offline", "account", b.Account, "source", b.Source, "reason", reason,
		"registered_for", s.o.Clock.Now().Sub(b.RegisteredAt).Round(time.Second).String())
}

// askRunning sends one request to the server running on the data folder.
func (s *Server) askRunning(req controlRequest) (controlResponse, error) {
	path := filepath.Join(s.o.DataDir, ControlSocket)
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return controlResponse{}, ErrNotRunning
		}
		return controlResponse{}, fmt.Errorf("reaching the running server at %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return controlResponse{}, err
	}
	var res controlResponse
	if err := json.NewDecoder(c).Decode(&res); err != nil {
		return controlResponse{}, fmt.Errorf("the running server's answer: %w", err)
	}
	if res.Error != "" {
		return res, errors.New("the running server: " + res.Error)
	}
	return res, nil
}

// DisconnectDeleted tells the server running on this data folder (this
// one, if started, else the one in another process) that account was
// deleted: its device is disconnected. It reports whether a device was
// online; ErrNotRunning if no server runs.
func (s *Server) DisconnectDeleted(ctx context.Context, account string, failed []store.Key) (bool, error) {
	seen := map[string]bool{}
	var senders []string
	for _, k := range failed {
		if !seen[k.From] {
			seen[k.From] = true
			senders = append(senders, k.From)
		}
	}
	if s.registrar != nil {
		return s.disconnectDeleted(ctx, account, senders)
	}
	res, err := s.askRunning(controlRequest{Op: "disconnect", Account: account, Senders: senders})
	return res.Disconnected, err
}

// Devices returns what the server running on this data folder knows of
// registrations since it started (since); ErrNotRunning if none runs.
func (s *Server) Devices() (devices []Device, since time.Time, err error) {
	if s.registrar != nil {
		return s.devices(), s.since, nil
	}
	res, err := s.askRunning(controlRequest{Op: "devices"})
	return res.Devices, res.Since, err
}
