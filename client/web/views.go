package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/message"
)

// page is what every page template sees.
type page struct {
	View     string // "contacts", "conversation", "settings"
	Title    string
	Account  string
	Server   string
	Online   bool
	MaxChars int
	MaxBytes int
	// NotifyText: notifications show a received message's text (the
	// core's notify_text setting), not only who sent it.
	NotifyText bool
	Contacts   []contactView
	Peer       string           // the open conversation
	Messages   []client.Message // its messages, in the core's order
	// The start-a-conversation field, when what was typed is refused.
	StartValue, StartError string
	Settings               settingsView
}

type contactView struct {
	client.Contact
	Last    client.Message
	HasLast bool
	Current bool
}

type settingsView struct {
	InForce  client.Settings // what the running core uses
	Saved    client.Settings // what the profile holds (sealpost settings may have changed it)
	Validity string
	Done     bool
	Error    string
}

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"statusName":    func(s message.Status) string { return statusOf(s).Name },
		"statusMeaning": func(s message.Status) string { return statusOf(s).Meaning },
		"statusIcon":    func(s message.Status) template.HTML { return statusOf(s).Icon },
		"statusClass":   statusClass,
		"isError":       func(s message.Status) bool { return statusClass(s) == string(message.Error) },
		"isSending":     func(s message.Status) bool { return s == message.Sending },
		"iso":           func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"ms":            func(t time.Time) int64 { return t.UnixMilli() },
		"hhmm":          func(t time.Time) string { return t.Local().Format("15:04") },
	}
	t, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web UI templates: %w", err)
	}
	return t, nil
}

func (u *UI) render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := u.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		u.logf("web: render %s: %v", name, err)
		http.Error(w, "could not draw the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (u *UI) basePage(ctx context.Context, view, peer string) (page, error) {
	p := page{
		View: view, Account: u.core.Account(), Server: u.core.Server(), Online: u.core.Online(),
		MaxChars: message.MaxChars, MaxBytes: message.MaxBytes, Peer: peer,
		NotifyText: u.core.Settings().NotifyText,
	}
	cs, err := u.contacts(ctx, peer)
	p.Contacts = cs
	return p, err
}

// contacts lists the conversations newest first with their last message.
func (u *UI) contacts(ctx context.Context, current string) ([]contactView, error) {
	cs, err := u.core.Contacts(ctx)
	if err != nil {
		return nil, err
	}
	last, err := u.core.LastMessages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]contactView, 0, len(cs))
	for _, c := range cs {
		m, ok := last[c.Name]
		out = append(out, contactView{Contact: c, Last: m, HasLast: ok, Current: c.Name == current})
	}
	return out, nil
}

func (u *UI) contactsPage(w http.ResponseWriter, r *http.Request) {
	p, err := u.basePage(r.Context(), "contacts", "")
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Title = "Contacts"
	u.render(w, "page", p)
}

// start opens the conversation with the account typed in the contacts
// page's field, or shows that page again saying what is wrong with it.
func (u *UI) start(w http.ResponseWriter, r *http.Request) {
	name := client.NormalizeAccount(r.URL.Query().Get("peer"))
	err := message.CheckAccount(name)
	if err == nil && name == u.core.Account() {
		err = errors.New("that is your own account; write the name of someone else")
	}
	if err == nil {
		http.Redirect(w, r, "/c/"+url.PathEscape(name), http.StatusSeeOther)
		return
	}
	p, perr := u.basePage(r.Context(), "contacts", "")
	if perr != nil {
		u.fail(w, r, perr)
		return
	}
	p.Title = "Contacts"
	p.StartValue, p.StartError = r.URL.Query().Get("peer"), err.Error()
	w.WriteHeader(http.StatusUnprocessableEntity)
	u.render(w, "page", p)
}

// conversationPage shows the conversation with peer; opening it marks its
// messages read (Core.History).
func (u *UI) conversationPage(w http.ResponseWriter, r *http.Request) {
	peer := r.PathValue("peer")
	if err := message.CheckAccount(peer); err != nil {
		if n := client.NormalizeAccount(peer); n != peer && message.CheckAccount(n) == nil {
			http.Redirect(w, r, "/c/"+url.PathEscape(n), http.StatusSeeOther)
			return
		}
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	ctx := r.Context()
	msgs, err := u.core.History(ctx, peer)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p, err := u.basePage(ctx, "conversation", peer)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Title = peer
	p.Messages = msgs
	u.render(w, "page", p)
}

func (u *UI) contactsFragment(w http.ResponseWriter, r *http.Request) {
	cs, err := u.contacts(r.Context(), r.URL.Query().Get("current"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, "contact-list", cs)
}

// conversationFragment redraws a conversation without marking it read:
// the page asks for that itself when the user can see it.
func (u *UI) conversationFragment(w http.ResponseWriter, r *http.Request) {
	peer := r.PathValue("peer")
	if err := message.CheckAccount(peer); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	msgs, err := u.core.Conversation(r.Context(), peer)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, "messages", page{Peer: peer, Messages: msgs})
}

func (u *UI) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"account": u.core.Account(), "online": u.core.Online()})
}

// send hands a text to the core (Core.Send: the shared message rules, the
// outbox and its retry rule). A refused text answers 422 with the rule's
// code and words.
func (u *UI) send(w http.ResponseWriter, r *http.Request) {
	peer := r.PathValue("peer")
	text := r.PostFormValue("text")
	m, err := u.core.Send(r.Context(), peer, text)
	if err != nil {
		var re *message.RuleError
		code, status := "send_failed", http.StatusInternalServerError
		switch {
		case errors.As(err, &re):
			code, status = re.Code, http.StatusUnprocessableEntity
		case message.CheckAccount(peer) != nil:
			code, status = "bad_recipient", http.StatusBadRequest
		}
		if wantsJSON(r) {
			writeError(w, status, code, err.Error())
			return
		}
		http.Error(w, err.Error(), status)
		return
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"id": m.ID, "status": m.Status})
		return
	}
	http.Redirect(w, r, "/c/"+url.PathEscape(peer), http.StatusSeeOther)
}

func (u *UI) markRead(w http.ResponseWriter, r *http.Request) {
	if err := u.core.MarkRead(r.Context(), r.PathValue("peer")); err != nil {
		writeError(w, http.StatusBadRequest, "mark_read_failed", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// retry sends an Error message again with Core.Resend: a new message with
// the same text and a new id (the server may know the old id, as expired,
// and would answer with that); the failed one stays as it was.
func (u *UI) retry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, err := u.core.Message(ctx, r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	again, err := u.core.Resend(ctx, m.ID)
	if err != nil {
		writeError(w, http.StatusConflict, "not_sent_again", err.Error())
		return
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"id": again.ID, "status": again.Status})
		return
	}
	http.Redirect(w, r, "/c/"+url.PathEscape(m.Peer), http.StatusSeeOther)
}

func (u *UI) settingsPage(w http.ResponseWriter, r *http.Request) {
	u.showSettings(w, r, false, "")
}

func (u *UI) showSettings(w http.ResponseWriter, r *http.Request, done bool, problem string) {
	p, err := u.basePage(r.Context(), "settings", "")
	if err != nil {
		u.fail(w, r, err)
		return
	}
	saved, err := client.LoadSettings(u.core.Home())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	p.Title = "Settings"
	p.Settings = settingsView{InForce: u.core.Settings(), Saved: saved, Validity: saved.Validity.String(), Done: done, Error: problem}
	if problem != "" {
		p.Settings.Validity = r.PostFormValue("validity")
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	u.render(w, "page", p)
}

// saveSettings puts validity, "persistent messages" and whether
// notifications show the text in force at once and writes them to the
// profile, with the core's own checks (Settings.Set, ApplySettings).
func (u *UI) saveSettings(w http.ResponseWriter, r *http.Request) {
	s := u.core.Settings()
	err := s.Set("validity", strings.TrimSpace(r.PostFormValue("validity")))
	if err == nil {
		err = s.Set("persistent", fmt.Sprint(r.PostFormValue("persistent") == "on"))
	}
	if err == nil {
		err = s.Set("notify_text", fmt.Sprint(r.PostFormValue("notify_text") == "on"))
	}
	if err == nil {
		err = u.core.ApplySettings(s)
	}
	if err != nil {
		u.showSettings(w, r, false, err.Error())
		return
	}
	u.showSettings(w, r, true, "")
}

func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	u.logf("web: %s %s: %v", r.Method, r.URL.Path, err)
	if wantsJSON(r) {
		writeError(w, http.StatusInternalServerError, "failed", err.Error())
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// wantsJSON reports whether the request comes from the page's script.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
