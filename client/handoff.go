package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Hand-off: while `sealpost run` is up, a `sealpost send` in another
// process stores its message in the shared local store and then tells the
// running core over a unix socket in the profile folder (0600, in a 0700
// folder). The running core treats it as the trigger "the user sends
// another message": it starts the new message's round and a new round for
// every message waiting after a failed one.

type handOffRequest struct {
	Op string `json:"op"` // "sent"
	ID string `json:"id"`
}

type handOffReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// handOffTimeout bounds the local exchange (wall clock: it is not one of
// the message rules, only a guard against a hung peer process).
const handOffTimeout = 5 * time.Second

func (c *Core) listenHandOff() (net.Listener, error) {
	path := filepath.Join(c.home, socketFile)
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("sealpost run is already running for this profile (%s answers)", path)
	}
	// Nobody answers: a socket left by a run that crashed.
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (a unix socket path must be under 108 bytes): %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("protect %s: %w", path, err)
	}
	return ln, nil
}

func (c *Core) serveHandOff(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.logf("hand-off socket: %v", err)
			}
			return
		}
		go c.handleHandOff(ctx, conn)
	}
}

func (c *Core) handleHandOff(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handOffTimeout))
	var req handOffRequest
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	reply := handOffReply{OK: true}
	if err := json.Unmarshal(line, &req); err != nil || req.Op != "sent" {
		reply = handOffReply{Error: "unknown request"}
	} else if _, err := c.db.outgoing(ctx, req.ID); err != nil {
		reply = handOffReply{Error: err.Error()}
	} else {
		c.logf("hand-off: %s from another process", req.ID)
		c.Trigger(ctx, TriggerSend)
	}
	b, _ := json.Marshal(reply)
	conn.Write(append(b, '\n'))
}

// HandOff tells a `sealpost run` of the same profile that the message id
// was just stored by Send, so that it submits it. It reports false, and no
// error, when no run is up: the caller then submits it itself (Flush).
func (c *Core) HandOff(ctx context.Context, id string) (bool, error) {
	path := filepath.Join(c.home, socketFile)
	d := net.Dialer{Timeout: handOffTimeout}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("reach sealpost run at %s: %w", path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(handOffTimeout))
	b, _ := json.Marshal(handOffRequest{Op: "sent", ID: id})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return false, fmt.Errorf("hand the message to sealpost run: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return false, fmt.Errorf("hand the message to sealpost run: no answer: %w", err)
	}
	var reply handOffReply
	if err := json.Unmarshal(line, &reply); err != nil {
		return false, fmt.Errorf("hand the message to sealpost run: bad answer: %w", err)
	}
	if !reply.OK {
		return false, fmt.Errorf("sealpost run refused the message: %s", reply.Error)
	}
	return true, nil
}
