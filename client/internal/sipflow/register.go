package sipflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Registrar builds the REGISTER requests of one device. It keeps the
// Call-ID, From tag and CSeq across refreshes, as RFC 3261 §10.2.4 asks of
// a UA refreshing its own binding.
type Registrar struct {
	User   string // account name
	Domain string // SIP domain; also the digest realm
	// HA1 holds H(user:realm:password) per digest algorithm ("MD5",
	// "SHA-256"), so the device never keeps the password itself.
	HA1     map[string]string
	Expires time.Duration // asked for; the server may grant less
	// Header lines added to each REGISTER (features the device supports).
	Extra [][2]string

	callID string
	tag    string
	cseq   uint32
}

// AuthError is a REGISTER refused after digest authentication: the stored
// credentials are wrong, or were made for another realm.
type AuthError struct {
	Code   int
	Reason string
	Detail string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("SIP server refused the registration (%d %s): %s", e.Code, e.Reason, e.Detail)
}

// Register registers the flow's address, answering one digest challenge
// (two if the server says the nonce went stale). It returns the expiry the
// server granted.
func (c *Conn) Register(ctx context.Context, r *Registrar) (time.Duration, error) {
	return c.register(ctx, r, r.Expires)
}

func (c *Conn) register(ctx context.Context, r *Registrar, expires time.Duration) (time.Duration, error) {
	if r.callID == "" {
		r.callID = sip.GenerateTagN(24)
		r.tag = sip.GenerateTagN(12)
	}
	var auth string
	challenges := 0
	for {
		req := r.request(c.LocalAddr(), expires, auth)
		res, err := c.Do(ctx, req)
		if err != nil {
			return 0, err
		}
		switch {
		case res.IsSuccess():
			return grantedExpiry(res, expires), nil
		case res.StatusCode == 401 || res.StatusCode == 407:
			chal, err := pickChallenge(res, r.HA1)
			if err != nil {
				return 0, err
			}
			// A second challenge is only acceptable when it says our nonce
			// went stale (RFC 3261 §22.4); otherwise the credentials are wrong.
			if challenges > 0 && !chal.Stale || challenges > 2 {
				detail := fmt.Sprintf("wrong credentials for %s@%s; run sealpost login again", r.User, r.Domain)
				return 0, &AuthError{Code: res.StatusCode, Reason: res.Reason, Detail: detail}
			}
			if chal.Realm != r.Domain {
				return 0, &AuthError{Code: res.StatusCode, Reason: res.Reason,
					Detail: fmt.Sprintf("the server's realm is %q but this profile was made for %q; run sealpost login again with --domain %s", chal.Realm, r.Domain, chal.Realm)}
			}
			challenges++
			ha1 := r.HA1[strings.ToUpper(chal.Algorithm)]
			if chal.Algorithm == "" {
				ha1 = r.HA1["MD5"]
			}
			cred, err := digest.Digest(chal, digest.Options{
				Method: string(sip.REGISTER), URI: req.Recipient.Addr(),
				Username: r.User, A1: ha1,
			})
			if err != nil {
				return 0, fmt.Errorf("answer the SIP digest challenge: %w", err)
			}
			auth = cred.String()
		case res.StatusCode == 403:
			return 0, &AuthError{Code: res.StatusCode, Reason: res.Reason,
				Detail: fmt.Sprintf("%s@%s may not register", r.User, r.Domain)}
		default:
			return 0, fmt.Errorf("SIP server answered REGISTER with %d %s", res.StatusCode, res.Reason)
		}
	}
}

// pickChallenge chooses the strongest digest challenge we hold an HA1 for:
// SHA-256 before MD5 (RFC 8760 §2.4: the server lists its preference, the
// client takes the first it supports).
func pickChallenge(res *sip.Response, ha1 map[string]string) (*digest.Challenge, error) {
	name := "WWW-Authenticate"
	if res.StatusCode == 407 {
		name = "Proxy-Authenticate"
	}
	var offered []string
	var best *digest.Challenge
	for _, h := range res.GetHeaders(name) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		alg := strings.ToUpper(chal.Algorithm)
		if alg == "" {
			alg = "MD5"
		}
		chal.Algorithm = alg
		offered = append(offered, alg)
		if _, ok := ha1[alg]; !ok {
			continue
		}
		if len(chal.QOP) > 0 && !chal.SupportsQOP("auth") {
			continue
		}
		if best == nil || alg == "SHA-256" && best.Algorithm != "SHA-256" {
			best = chal
		}
	}
	if best == nil {
		return nil, fmt.Errorf("SIP server offered no usable digest challenge (algorithms: %s)", strings.Join(offered, ", "))
	}
	return best, nil
}

// grantedExpiry reads the expiry the server granted (RFC 3261 §10.2.4):
// the expires parameter of our Contact, else the Expires header.
func grantedExpiry(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		if ch, ok := h.(*sip.ContactHeader); ok {
			if v, ok := ch.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

func (r *Registrar) request(local net.Addr, expires time.Duration, auth string) *sip.Request {
	host, port := "127.0.0.1", 0
	if ta, ok := local.(*net.TCPAddr); ok {
		host, port = ta.IP.String(), ta.Port
	}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: r.Domain})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS",
		Host: host, Port: port, Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranch())
	via.Params.Add("rport", "")
	// alias (RFC 5923): the server may send requests back on this connection.
	via.Params.Add("alias", "")
	req.AppendHeader(via)
	aor := sip.Uri{Scheme: "sip", User: r.User, Host: r.Domain}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", r.tag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	callID := sip.CallIDHeader(r.callID)
	req.AppendHeader(&callID)
	r.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	contactURI := sip.Uri{Scheme: "sip", User: r.User, Host: host, Port: port,
		UriParams: sip.NewParams()}
	contactURI.UriParams.Add("transport", "tls")
	// ob (RFC 5626 §5.4): this contact is reachable only over this flow.
	contactURI.UriParams.Add("ob", "")
	req.AppendHeader(&sip.ContactHeader{Address: contactURI, Params: sip.NewParams()})
	exp := sip.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&exp)
	for _, kv := range r.Extra {
		req.AppendHeader(sip.NewHeader(kv[0], kv[1]))
	}
	if auth != "" {
		req.AppendHeader(sip.NewHeader("Authorization", auth))
	}
	req.SetBody(nil)
	return req
}

// IsAuth reports whether err is a refusal of the device's credentials.
func IsAuth(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}
