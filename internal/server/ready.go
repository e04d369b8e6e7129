package server

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// healthz answers whether the process is alive: it always is when it can
// answer. A supervisor restarts on this one failing, so it does not look at
// the store: a restart cannot free a disk or mend a damaged file.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "ok")
}

// readyz answers whether this node should get traffic: it is not ready
// while its store's writes fail (a full disk: every submission would get
// 503), after any read met a damaged page (part of the store is
// unreadable), or when a read does not work now. The store keeps the
// first two as state (sqlite's health), so a probe reports them even
// when no request has touched the store since.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
