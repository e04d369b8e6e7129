package interop

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// sipMsg is one SIP message found in a client's log. Both clients print each
// message they send or receive whole (baresip with -s, linphonec at -d 6),
// start line first, so the log is also a trace of the conversation.
type sipMsg struct {
	Line    int // index of the start line in the log, to order events
	Method  string
	URI     string // Request-URI; empty for a response
	Status  int    // 0 for a request
	Reason  string
	Headers map[string][]string // lower-case names
	Body    string              // as far as the log shows it
}

func (m sipMsg) header(name string) string {
	if v := m.Headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// cseq returns the CSeq number and method.
func (m sipMsg) cseq() (int, string) {
	f := strings.Fields(m.header("CSeq"))
	if len(f) != 2 {
		return -1, ""
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1, ""
	}
	return n, f[1]
}

// uriUser returns the user part of a SIP URI or of a name-addr.
func uriUser(s string) string {
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sips:"), "sip:")
	if i := strings.IndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	return ""
}

func (m sipMsg) String() string {
	if m.Status != 0 {
		return fmt.Sprintf("SIP/2.0 %d %s (CSeq %s, Call-ID %s)", m.Status, m.Reason, m.header("CSeq"), m.header("Call-ID"))
	}
	return fmt.Sprintf("%s %s (CSeq %s, Call-ID %s, Content-Type %q)", m.Method, m.URI, m.header("CSeq"), m.header("Call-ID"), m.header("Content-Type"))
}

var (
	ansiEscape  = regexp.MustCompile("\x1b\\[[0-9;]*m")
	requestLine = regexp.MustCompile(`^([A-Z]+) (sips?:\S+) SIP/2\.0$`)
	statusLine  = regexp.MustCompile(`^SIP/2\.0 (\d{3}) ?(.*)$`)
	headerLine  = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9.!%*_+` + "`" + `'~-]*)\s*:\s?(.*)$`)
	// gluedStart finds a start line that follows the end of a body on the
	// same line: a client that logs what it read, as it read it, shows two
	// messages that came in one TLS record with the second's start line
	// right after the first's body (a body has no line end of its own).
	gluedStart    = regexp.MustCompile(`(?:(?:MESSAGE|REGISTER|OPTIONS|NOTIFY|SUBSCRIBE|PUBLISH|INVITE|ACK|BYE|CANCEL|INFO|UPDATE|REFER|PRACK) sips?:\S+ SIP/2\.0|SIP/2\.0 \d{3}(?: .*)?)$`)
	compactHeader = map[string]string{"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via"}
)

// parseTrace finds every SIP message in a client's log. Colour codes are
// removed; a message cut short by the log (linphonec stops logging a binary
// body) keeps what was shown.
func parseTrace(log string) []sipMsg {
	lines := strings.Split(ansiEscape.ReplaceAllString(log, ""), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], "\r")
	}
	var out []sipMsg
	for i := 0; i < len(lines); i++ {
		m := sipMsg{Line: i}
		if r := requestLine.FindStringSubmatch(lines[i]); r != nil {
			m.Method, m.URI = r[1], r[2]
		} else if r := statusLine.FindStringSubmatch(lines[i]); r != nil {
			m.Status, _ = strconv.Atoi(r[1])
			m.Reason = r[2]
		} else {
			if loc := gluedStart.FindStringIndex(lines[i]); loc != nil && loc[0] > 0 {
				lines[i] = lines[i][loc[0]:] // look at this line again, from the start line
				i--
			}
			continue
		}
		m.Headers = map[string][]string{}
		j := i + 1
		for ; j < len(lines) && lines[j] != ""; j++ {
			h := headerLine.FindStringSubmatch(lines[j])
			if h == nil {
				break // the log moved on: the message was cut short
			}
			name := strings.ToLower(h[1])
			if long, ok := compactHeader[name]; ok {
				name = long
			}
			m.Headers[name] = append(m.Headers[name], strings.TrimSpace(h[2]))
		}
		if m.Status == 0 {
			if _, method := m.cseq(); method != "" && m.Method == "" {
				m.Method = method
			}
		} else {
			_, m.Method = m.cseq()
		}
		if j < len(lines) && lines[j] == "" {
			n, _ := strconv.Atoi(m.header("Content-Length"))
			var body strings.Builder
			for k := j + 1; k < len(lines) && body.Len() < n; k++ {
				if body.Len() > 0 {
					body.WriteString("\n")
				}
				body.WriteString(lines[k])
			}
			b := body.String()
			if len(b) > n {
				b = b[:n]
			}
			m.Body = b
		}
		out = append(out, m)
		i = j
	}
	return out
}

// finalResponse finds the last MESSAGE request whose body contains text
// (after a digest challenge the client sends it again with a new CSeq) and
// the final response to it. ok is false while there is none yet.
func finalResponse(msgs []sipMsg, text string) (req, res sipMsg, ok bool) {
	found := false
	for _, m := range msgs {
		if m.Status == 0 && m.Method == "MESSAGE" && strings.Contains(m.Body, text) {
			req, found = m, true
		}
	}
	if !found {
		return req, res, false
	}
	seq, _ := req.cseq()
	for _, m := range msgs {
		if n, method := m.cseq(); m.Status >= 200 && m.Line > req.Line && method == "MESSAGE" && n == seq &&
			m.header("Call-ID") == req.header("Call-ID") {
			return req, m, true
		}
	}
	return req, res, false
}

// receivedMessages returns the MESSAGE requests addressed to the client's
// own account (the server's deliveries), leaving out those the client sent.
func receivedMessages(msgs []sipMsg, account string) []sipMsg {
	var out []sipMsg
	for _, m := range msgs {
		if m.Status == 0 && m.Method == "MESSAGE" && uriUser(m.header("From")) != account && uriUser(m.header("To")) == account {
			out = append(out, m)
		}
	}
	return out
}

// reportsIn returns the delivery reports (message/imdn+xml) among msgs.
func reportsIn(msgs []sipMsg) []sipMsg {
	var out []sipMsg
	for _, m := range msgs {
		ct := strings.ToLower(m.header("Content-Type"))
		if strings.HasPrefix(ct, "message/imdn+xml") || strings.Contains(m.Body, "urn:ietf:params:xml:ns:imdn") {
			out = append(out, m)
		}
	}
	return out
}

// registerResponses returns the final responses to REGISTER requests, in
// order.
func registerResponses(msgs []sipMsg) []sipMsg {
	var out []sipMsg
	for _, m := range msgs {
		if m.Status >= 200 && m.Method == "REGISTER" {
			out = append(out, m)
		}
	}
	return out
}

// registerRequests returns the REGISTER requests the client sent, in order.
func registerRequests(msgs []sipMsg) []sipMsg {
	var out []sipMsg
	for _, m := range msgs {
		if m.Status == 0 && m.Method == "REGISTER" {
			out = append(out, m)
		}
	}
	return out
}

// expiresOf returns the expiry a REGISTER asks for: the Contact's expires
// parameter, else the Expires header, else -1.
func expiresOf(m sipMsg) int {
	c := m.header("Contact")
	if i := strings.Index(strings.ToLower(c), ";expires="); i >= 0 {
		v := c[i+len(";expires="):]
		if j := strings.IndexAny(v, ";,> "); j >= 0 {
			v = v[:j]
		}
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	if n, err := strconv.Atoi(m.header("Expires")); err == nil {
		return n
	}
	return -1
}

// traceTail renders the last n messages of a trace for a failure report.
func traceTail(msgs []sipMsg, n int) string {
	if len(msgs) > n {
		msgs = msgs[len(msgs)-n:]
	}
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("  ")
		b.WriteString(m.String())
		b.WriteString("\n")
	}
	return b.String()
}

// linphoneRead is the line belle-sip (linphonec's SIP stack) logs before the
// bytes of each read from a connection, as they came.
var linphoneRead = regexp.MustCompile(`belle-sip-message-channel \[(0x[0-9a-f]+)\]: received \[(\d+)\] new bytes from \[[^\]]*\]:\n`)

// reassembleReads rewrites linphonec's log so that every SIP message it read
// stands whole, on lines of its own, right after the read that completed
// it. One read may hold several messages (the server writes the MESSAGEs
// of one round together) or end inside one; parseTrace needs each whole.
func reassembleReads(log string) string {
	var out strings.Builder
	pending := map[string]string{} // by channel: bytes read, not yet a whole message
	for {
		loc := linphoneRead.FindStringSubmatchIndex(log)
		if loc == nil {
			out.WriteString(log)
			return out.String()
		}
		out.WriteString(log[:loc[1]])
		channel := log[loc[2]:loc[3]]
		n, _ := strconv.Atoi(log[loc[4]:loc[5]])
		end := min(loc[1]+n, len(log))
		buf := pending[channel] + log[loc[1]:end]
		for {
			msg, rest, ok := nextSIPMessage(buf)
			if !ok {
				break
			}
			out.WriteString(msg + "\n")
			buf = rest
		}
		pending[channel] = buf
		log = log[end:]
	}
}

// nextSIPMessage splits the first whole message (start line and header
// fields, a blank line, Content-Length bytes of body) off a stream, after
// any keepalive line ends.
func nextSIPMessage(stream string) (msg, rest string, ok bool) {
	s := strings.TrimLeft(stream, "\r\n")
	head := strings.Index(s, "\r\n\r\n")
	if head < 0 {
		return "", stream, false
	}
	n := 0
	for _, line := range strings.Split(s[:head], "\r\n") {
		name, value, found := strings.Cut(line, ":")
		if name = strings.TrimSpace(name); found && (strings.EqualFold(name, "Content-Length") || name == "l") {
			n, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	end := head + 4 + n
	if end > len(s) {
		return "", stream, false
	}
	return s[:end], s[end:], true
}
