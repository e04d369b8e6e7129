package sipserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sealpost/sealpost/internal/clock"
)

// Every SIP message read from a connection goes through a framedConn before
// sipgo sees it. sipgo's stream parser answers nothing when it cannot frame
// or parse a message: it logs the error, quoting the message (so a body cut
// short by a wrong Content-Length puts the user's text in the log), and
// drops the connection. Here each message is framed and checked first;
// sipgo is handed only messages that parse, and every bad request gets an
// answer that names the problem (400, 413 or 513 for size, 505 for a
// version). When the message's own boundaries cannot be trusted (a missing,
// doubled or unreadable Content-Length, a line that is not SIP), the
// connection is closed after the answer, since whatever follows cannot be
// told from the bad message's remains. Nothing of the input is ever logged:
// only the kind of problem and the address.

// Size limits. Sealpost's messages are small: a REGISTER is under 1 KiB and
// a MESSAGE carries at most 2,048 bytes of text.
const (
	maxHeaderBytes  = 16 << 10 // start line and header fields
	maxHeaderFields = 128
	maxBodyBytes    = 16 << 10
	maxURIBytes     = 512  // a Contact or Request-URI
	maxCopiedHeader = 1024 // a header copied into an answer
	maxCSeq         = 1<<31 - 1
	// closeGrace bounds the wait, after a framing error, for the answers
	// to the requests before it, before sipgo is told the connection ended.
	closeGrace = 5 * time.Second
)

// badInput is a problem with a message: the answer's code and reason (never
// quoting the input), and whether the stream can still be read after it.
type badInput struct {
	code    int
	reason  string
	kind    string // for logs and metrics: fixed text, never input
	framing bool   // the message's end is unknown: close after answering
}

func (b *badInput) Error() string { return b.reason }

// framing reports a bad input seen on a connection (for logs and metrics).
type framingObserver func(remote string, b *badInput)

// framedConn hands sipgo whole, checked messages; see the top of this file.
type framedConn struct {
	net.Conn
	observe framingObserver

	acc     []byte // bytes read and not yet checked; nil when empty
	pending []byte // a checked unit being handed to sipgo
	closing bool   // answered a framing error: EOF once pending is out
	grace   time.Duration

	mu        sync.Mutex
	lastRead  time.Time        // on the server's clock (now); guarded by mu
	now       func() time.Time // the server's clock; set before the first Read
	flow      time.Duration    // the Flow-Timer of an RFC 5626 flow on it, or 0; guarded by mu
	passed    int              // requests handed to sipgo; guarded by mu
	answered  int              // final responses written; guarded by mu
	wrote     chan struct{}    // signalled (without blocking) at each final response
	authedAt  time.Time        // last digest success on it, server clock; guarded by mu
	check     clock.Timer      // the auth deadline's next check; guarded by mu
	gone      bool             // closed; guarded by mu
	held      *heldWrites      // writes gathered by a burst (hold), or nil; guarded by mu
	awaitingN int              // the server's MESSAGEs on it awaiting an answer; guarded by Server.answersMu
	localPort int              // for the Via of the server's requests; set by watch
}

// heldWrites are the writes made to a connection while a delivery run puts
// several MESSAGEs on it at once (Server.Burst): written at the end of the
// burst in one TLS record and one system call, instead of one of each per
// MESSAGE. Taken from heldPool for the burst, so an idle connection pays one
// pointer and a burst allocates nothing.
type heldWrites struct {
	data    []byte
	answers int // final responses among them
	holders int // hold calls not yet released
}

var heldPool = sync.Pool{New: func() any { return &heldWrites{data: make([]byte, 0, 8<<10)} }}

// maxPooledHeld bounds the buffers kept for later bursts: a burst of 64
// MESSAGEs of 2,048 bytes of text is ~170 KiB; a typical one a few KiB.
const maxPooledHeld = 64 << 10

func newFramedConn(c net.Conn, observe framingObserver) *framedConn {
	return &framedConn{Conn: c, observe: observe, wrote: make(chan struct{}, 1), grace: closeGrace}
}

// Write counts final responses, so that a connection closed for a framing
// error first answers the requests it took before the error. During a
// burst it only gathers b, in the order of the calls, for release.
func (c *framedConn) Write(b []byte) (int, error) {
	final := len(b) > 12 && bytes.HasPrefix(b, []byte("SIP/2.0 ")) && b[8] >= '2'
	c.mu.Lock()
	if h := c.held; h != nil {
		h.data = append(h.data, b...)
		if final {
			h.answers++
		}
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Write(b)
	if final {
		c.countAnswers(1)
	}
	return n, err
}

func (c *framedConn) countAnswers(n int) {
	c.mu.Lock()
	c.answered += n
	c.mu.Unlock()
	select {
	case c.wrote <- struct{}{}:
	default:
	}
}

// hold starts gathering the connection's writes; each hold is ended by
// one release, and the last release writes what was gathered.
func (c *framedConn) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == nil {
		c.held = heldPool.Get().(*heldWrites)
	}
	c.held.holders++
}

// release ends a hold. The last one writes the gathered bytes in one
// write; if that fails the connection is closed, so that the MESSAGEs in
// it fail at once (their waits end with the connection: answers.go)
// instead of at their timeout.
func (c *framedConn) release() {
	c.mu.Lock()
	h := c.held
	if h == nil {
		c.mu.Unlock()
		return
	}
	if h.holders--; h.holders > 0 {
		c.mu.Unlock()
		return
	}
	c.held = nil
	c.mu.Unlock()
	if len(h.data) > 0 {
		if _, err := c.Conn.Write(h.data); err != nil {
			c.Conn.Close()
		}
	}
	if h.answers > 0 {
		c.countAnswers(h.answers)
	}
	if cap(h.data) <= maxPooledHeld {
		*h = heldWrites{data: h.data[:0]}
		heldPool.Put(h)
	}
}

// awaitAnswers waits, at most closeGrace, until every request handed to
// sipgo has had its final response.
func (c *framedConn) awaitAnswers() {
	timeout := time.NewTimer(c.grace)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		done := c.answered >= c.passed
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.wrote:
		case <-timeout.C:
			return
		}
	}
}

// Read returns one unit at a time: a keepalive (CRLFs, alone, so sipgo
// answers a ping) or a checked message, in pieces if b is shorter.
func (c *framedConn) Read(b []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(b, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
			}
			return n, nil
		}
		if c.closing {
			c.awaitAnswers()
			return 0, io.EOF
		}
		if len(c.acc) > 0 {
			unit, rest, bad := nextUnit(c.acc)
			if bad != nil {
				c.answer(unit, bad)
				if bad.framing {
					c.acc, c.closing = nil, true
				} else if c.acc = rest; len(rest) == 0 {
					c.acc = nil
				}
				continue
			}
			if unit != nil {
				c.handing(unit)
				c.pending = unit
				if len(rest) == 0 {
					c.acc = nil
				} else {
					c.acc = rest
				}
				continue
			}
		}
		// Need more bytes. Read into b (the caller's buffer) and keep
		// a copy: an idle connection then holds no buffer of its own.
		n, err := c.Conn.Read(b)
		if n > 0 {
			c.mu.Lock()
			if c.now != nil {
				c.lastRead = c.now()
			}
			c.mu.Unlock()
			if err == nil && len(c.acc) == 0 {
				// The common case: the read begins with a whole unit
				// that passes. It is handed over where it lies, at the
				// start of b; only what follows it is copied.
				if unit, rest, bad := nextUnit(b[:n]); bad == nil && unit != nil {
					c.handing(unit)
					if len(rest) > 0 {
						c.acc = append([]byte(nil), rest...)
					}
					return len(unit), nil
				}
			}
			c.acc = append(c.acc, b[:n]...)
		}
		if err != nil {
			if len(c.acc) > 0 && errors.Is(err, io.EOF) {
				// A message cut short by the end of the stream:
				// nothing to answer on a connection going away.
				c.acc = nil
			}
			return 0, err
		}
	}
}

// handing counts a unit handed to sipgo: a request is owed an answer.
func (c *framedConn) handing(unit []byte) {
	if unit[0] != '\r' && unit[0] != '\n' && !bytes.HasPrefix(unit, []byte("SIP/")) {
		c.mu.Lock()
		c.passed++
		c.mu.Unlock()
	}
}

// answer writes the answer to a bad request (none to a bad response) and
// reports it.
func (c *framedConn) answer(msg []byte, bad *badInput) {
	if c.observe != nil {
		c.observe(c.RemoteAddr().String(), bad)
	}
	if res := answerFor(msg, bad); res != nil {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Conn.Write(res)
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
}

// nextUnit takes the next unit off buf: a keepalive, or a whole message
// that passed the checks. It returns a nil unit when more bytes are needed.
// For a bad message it returns the problem, the bytes to answer (unit) and,
// when the problem leaves the framing intact, the bytes after the message
// (rest).
func nextUnit(buf []byte) (unit, rest []byte, bad *badInput) {
	for len(buf) > 0 {
		if buf[0] == '\r' || buf[0] == '\n' {
			n := 0
			for n < len(buf) && n < 4 && (buf[n] == '\r' || buf[n] == '\n') {
				n++
			}
			if n < 4 && n == len(buf) {
				// Perhaps a ping split by the network: wait for the
				// rest, so that sipgo sees "\r\n\r\n" whole and
				// answers it. A lone CRLF needs no answer anyway.
				return nil, buf, nil
			}
			return buf[:n:n], buf[n:], nil
		}
		if bad := checkStartPrefix(buf); bad != nil {
			return buf, nil, bad
		}
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) > maxHeaderBytes {
				return buf, nil, &badInput{513, "Message Too Large: header section over " + strconv.Itoa(maxHeaderBytes) + " bytes", "header too large", true}
			}
			if bytes.Contains(buf, []byte("\n\n")) {
				return buf, nil, &badInput{400, "Bad Request: lines must end with CRLF", "bare LF", true}
			}
			return nil, buf, nil
		}
		if end+4 > maxHeaderBytes {
			return buf, nil, &badInput{513, "Message Too Large: header section over " + strconv.Itoa(maxHeaderBytes) + " bytes", "header too large", true}
		}
		head := buf[:end+2] // start line and fields, each ending in CRLF
		length, lbad := frameLength(head)
		if lbad != nil {
			return buf, nil, lbad
		}
		total := end + 4 + length
		if len(buf) < total {
			return nil, buf, nil
		}
		msg := buf[:total:total]
		if bad := checkMessage(msg, head); bad != nil {
			return msg, buf[total:], bad
		}
		return msg, buf[total:], nil
	}
	return nil, nil, nil
}

// frameLength checks the start line and header fields for what framing
// needs (a SIP start line, fields with colons, one valid Content-Length) and
// returns the body length.
//
// It runs on every message, so it allocates nothing.
func frameLength(head []byte) (int, *badInput) {
	fields := head[:len(head)-2]
	start, rest, more := bytes.Cut(fields, crlf)
	if bad := checkStartLine(start); bad != nil && bad.framing {
		return 0, bad
	}
	if bytes.Count(fields, crlf) > maxHeaderFields {
		return 0, &badInput{513, "Message Too Large: more than " + strconv.Itoa(maxHeaderFields) + " header fields", "too many headers", true}
	}
	length, seen := 0, 0
	for more {
		var line []byte
		line, rest, more = bytes.Cut(rest, crlf)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			continue // folded continuation of the field above
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, &badInput{400, "Bad Request: header field without a colon", "header without colon", true}
		}
		if !isToken(bytes.TrimRight(name, " \t")) {
			return 0, &badInput{400, "Bad Request: malformed header field name", "bad header name", true}
		}
		// A token is ASCII, so EqualFold is ToLower's comparison here.
		if n := bytes.TrimSpace(name); !bytes.EqualFold(n, []byte("content-length")) && !bytes.EqualFold(n, []byte("l")) {
			continue
		}
		seen++
		v := bytes.TrimSpace(value)
		if len(v) == 0 || !allDigits(v) || len(v) > 10 {
			return 0, &badInput{400, "Bad Request: malformed Content-Length", "bad content-length", true}
		}
		n := 0 // at most 10 digits: no overflow
		for _, d := range v {
			n = n*10 + int(d-'0')
		}
		if n > maxBodyBytes {
			return 0, &badInput{413, "Request Entity Too Large: body over " + strconv.Itoa(maxBodyBytes) + " bytes", "body too large", true}
		}
		length = n
	}
	switch {
	case seen == 0:
		return 0, &badInput{400, "Bad Request: Content-Length missing (required on TLS)", "no content-length", true}
	case seen > 1:
		return 0, &badInput{400, "Bad Request: more than one Content-Length", "two content-lengths", true}
	}
	return length, nil
}

// checkStartPrefix refuses a stream whose start line is already wrong in
// the bytes read so far, without waiting for the rest of the header
// section (which may never come: the remains of a body cut short by a
// wrong Content-Length need not hold an empty line).
func checkStartPrefix(buf []byte) *badInput {
	if line, _, complete := bytes.Cut(buf, crlf); complete {
		if bad := checkStartLine(line); bad != nil && bad.framing {
			return bad
		}
		return nil
	}
	first, _, _ := bytes.Cut(buf, []byte(" "))
	if len(first) > 0 && !isToken(first) && !bytes.HasPrefix(first, []byte("SIP/")) {
		return &badInput{400, "Bad Request: malformed request line", "bad request line", true}
	}
	return nil
}

// checkStartLine checks a request or status line. A line that is neither
// is a framing error: the stream is not SIP, or not where we think it is.
func checkStartLine(line []byte) *badInput {
	if bytes.HasPrefix(line, []byte("SIP/")) {
		version, rest, ok := bytes.Cut(line, []byte(" "))
		code, _, _ := bytes.Cut(rest, []byte(" "))
		if !ok || len(code) != 3 || !allDigits(code) {
			return &badInput{0, "malformed status line", "bad status line", true}
		}
		if string(version) != "SIP/2.0" {
			return &badInput{0, "status line of another SIP version", "bad version", false}
		}
		return nil
	}
	// Method SP Request-URI SP SIP-Version, each part without a space.
	method, rest, ok := bytes.Cut(line, []byte(" "))
	uri, version, three := bytes.Cut(rest, []byte(" "))
	if !ok || !isToken(method) || !bytes.Contains(uri, []byte(":")) {
		return &badInput{400, "Bad Request: malformed request line", "bad request line", true}
	}
	if !three {
		return &badInput{400, "Bad Request: request line without SIP version", "no version", true}
	}
	if bytes.Contains(version, []byte(" ")) {
		return &badInput{400, "Bad Request: malformed request line", "bad request line", true}
	}
	if string(version) != "SIP/2.0" {
		if bytes.HasPrefix(version, []byte("SIP/")) {
			return &badInput{505, "Version Not Supported: only SIP/2.0", "bad version", false}
		}
		return &badInput{400, "Bad Request: malformed request line", "bad request line", true}
	}
	return nil
}

// checkMessage checks a framed message where RFC 3261 is strict. Its
// problems leave the stream readable: the message is answered and skipped.
func checkMessage(msg, head []byte) *badInput {
	start, _, _ := bytes.Cut(head, crlf)
	if bad := checkStartLine(start); bad != nil {
		return bad
	}
	parsed, err := sip.ParseMessage(msg)
	if err != nil {
		return &badInput{400, "Bad Request: malformed " + malformedField(head), "unparsable", false}
	}
	req, ok := parsed.(*sip.Request)
	if !ok {
		return nil // a response: sipgo matches it to its transaction
	}
	// One pass over the fields (sipgo's GetHeader lowercases every
	// field name it passes, allocating for most). The parser gives each
	// of these fields, in any spelling, its own type.
	var via, from, to, callID, cseq int
	var contacts []*sip.ContactHeader
	for _, h := range req.Headers() {
		switch h := h.(type) {
		case *sip.ViaHeader:
			via++
		case *sip.FromHeader:
			from++
		case *sip.ToHeader:
			to++
		case *sip.CallIDHeader:
			callID++
		case *sip.CSeqHeader:
			cseq++
		case *sip.ContactHeader:
			contacts = append(contacts, h)
		}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"Via", via}, {"From", from}, {"To", to}, {"Call-ID", callID}, {"CSeq", cseq}} {
		if f.n == 0 {
			return &badInput{400, "Bad Request: " + f.name + " header missing", "missing " + strings.ToLower(f.name), false}
		}
	}
	if from+to+callID+cseq != 4 {
		return &badInput{400, "Bad Request: From, To, Call-ID and CSeq must each appear once", "repeated header", false}
	}
	if req.Recipient.Scheme != "sip" && req.Recipient.Scheme != "sips" {
		return &badInput{416, "Unsupported URI Scheme: use sip or sips", "uri scheme", false}
	}
	if cseq := req.CSeq(); cseq.MethodName != req.Method {
		return &badInput{400, "Bad Request: CSeq method does not match the request method", "cseq method", false}
	} else if cseq.SeqNo > maxCSeq {
		return &badInput{400, "Bad Request: CSeq number above 2^31-1", "cseq range", false}
	}
	for _, c := range contacts {
		if c.Address.Wildcard {
			if req.Method != sip.REGISTER || len(contacts) != 1 || !expiresZero(req) {
				// RFC 3261 §10.3 step 6.
				return &badInput{400, "Bad Request: Contact * needs Expires: 0 and no other Contact", "contact wildcard", false}
			}
			continue
		}
		if bad := checkContactURI(c.Value(), c); bad != nil {
			return bad
		}
	}
	return nil
}

// checkContactURI refuses Contact URIs Sealpost would store and echo back
// but no phone needs: other schemes, very long ones, and control
// characters (raw or %-escaped).
func checkContactURI(raw string, c *sip.ContactHeader) *badInput {
	if c.Address.Scheme != "sip" && c.Address.Scheme != "sips" {
		return &badInput{400, "Bad Request: Contact URI must be sip: or sips:", "contact scheme", false}
	}
	uri := c.Address.String()
	if len(uri) > maxURIBytes || len(raw) > maxURIBytes*2 {
		return &badInput{400, "Bad Request: Contact URI longer than " + strconv.Itoa(maxURIBytes) + " bytes", "contact length", false}
	}
	lower := strings.ToLower(raw)
	for i := 0; i < len(raw); i++ {
		if raw[i] < 0x20 || raw[i] == 0x7f {
			return &badInput{400, "Bad Request: Contact URI holds control characters", "contact control", false}
		}
	}
	for i := strings.IndexByte(lower, '%'); i >= 0; i = strings.IndexByte(lower, '%') {
		if len(lower) >= i+3 {
			if v, err := strconv.ParseUint(lower[i+1:i+3], 16, 8); err == nil && (v < 0x20 || v == 0x7f) {
				return &badInput{400, "Bad Request: Contact URI holds control characters", "contact control", false}
			}
		}
		lower = lower[i+1:]
	}
	return nil
}

// expiresZero reports whether a request's Expires header is 0.
func expiresZero(req *sip.Request) bool {
	h := req.GetHeader("Expires")
	return h != nil && strings.TrimSpace(h.Value()) == "0"
}

// malformedField names the first header field sipgo cannot parse, by its
// canonical name when it is one Sealpost reads, for the reason phrase.
func malformedField(head []byte) string {
	parser := headerParser
	lines := bytes.Split(head[:len(head)-2], []byte("\r\n"))
	if _, err := sip.ParseMessage(append(append([]byte{}, lines[0]...), "\r\nContent-Length: 0\r\n\r\n"...)); err != nil {
		return "request line"
	}
	for i := 1; i < len(lines); i++ {
		line := lines[i]
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			line = append(append(append([]byte{}, line...), ' '), bytes.TrimLeft(lines[i], " \t")...)
		}
		if _, err := parser.ParseHeader(nil, line); err != nil {
			name, _, _ := bytes.Cut(line, []byte(":"))
			return canonicalField(string(bytes.TrimSpace(name))) + " header"
		}
	}
	return "message"
}

// headerParser parses single header fields as sipgo does.
var headerParser = sip.HeadersParser(sip.DefaultHeadersParser())

var fieldNames = map[string]string{
	"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
	"call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq", "contact": "Contact", "m": "Contact",
	"content-length": "Content-Length", "l": "Content-Length", "content-type": "Content-Type", "c": "Content-Type",
	"max-forwards": "Max-Forwards", "expires": "Expires", "route": "Route", "record-route": "Record-Route",
}

// canonicalField names a field for an answer without echoing input: a
// field Sealpost does not know is just "a".
func canonicalField(name string) string {
	if n, ok := fieldNames[strings.ToLower(name)]; ok {
		return n
	}
	return "a"
}

// answerFor forms the answer to a bad request: the status line and the
// fields a response must copy (Via, From, To, Call-ID, CSeq) where the
// request had them in a sane form. A bad response gets no answer.
func answerFor(msg []byte, bad *badInput) []byte {
	if bad.code == 0 || bytes.HasPrefix(msg, []byte("SIP/")) {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", bad.code, bad.reason)
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = min(len(msg), maxHeaderBytes)
	}
	lines := bytes.Split(msg[:end], []byte("\r\n"))
	if len(lines) > maxHeaderFields+1 {
		lines = lines[:maxHeaderFields+1]
	}
	for _, line := range lines[1:] {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(line) > maxCopiedHeader || !printable(value) {
			continue
		}
		switch field := canonicalField(string(bytes.TrimSpace(name))); field {
		case "Via", "From", "To", "Call-ID", "CSeq":
			copied := field + ": " + string(bytes.TrimSpace(value))
			if _, err := headerParser.ParseHeader(nil, []byte(copied)); err == nil {
				b.WriteString(copied + "\r\n")
			}
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

func printable(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var crlf = []byte("\r\n")

// allDigits reports whether s is ASCII digits only (true for none).
func allDigits(s []byte) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 3261 token (a method or field name).
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
