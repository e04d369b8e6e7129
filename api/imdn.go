package api

import (
	"encoding/xml"
	"errors"
	"fmt"
	"time"
)

// IMDN delivery-notification statuses used by Sealpost (RFC 5438 §7.2.1.1).
const (
	IMDNDelivered = "delivered"
	IMDNFailed    = "failed"
)

// IMDN is a delivery report as carried in a SIP MESSAGE body of type
// message/imdn+xml (RFC 5438). MessageID is the Sealpost message id the
// report is about; Recipient is the SIP URI of the original recipient.
type IMDN struct {
	MessageID string
	DateTime  time.Time
	Recipient string
	Status    string // IMDNDelivered or IMDNFailed
}

type imdnXML struct {
	XMLName      xml.Name `xml:"urn:ietf:params:xml:ns:imdn imdn"`
	MessageID    string   `xml:"message-id"`
	DateTime     string   `xml:"datetime"`
	RecipientURI string   `xml:"recipient-uri,omitempty"`
	OriginalURI  string   `xml:"original-recipient-uri,omitempty"`
	Delivery     *struct {
		Status struct {
			Delivered *struct{} `xml:"delivered"`
			Failed    *struct{} `xml:"failed"`
			Forbidden *struct{} `xml:"forbidden"`
			Error     *struct{} `xml:"error"`
		} `xml:"status"`
	} `xml:"delivery-notification"`
}

// MarshalIMDN renders a delivery report body.
func MarshalIMDN(r IMDN) ([]byte, error) {
	var x imdnXML
	x.MessageID = r.MessageID
	x.DateTime = r.DateTime.UTC().Format(time.RFC3339Nano)
	x.RecipientURI = r.Recipient
	x.OriginalURI = r.Recipient
	x.Delivery = new(struct {
		Status struct {
			Delivered *struct{} `xml:"delivered"`
			Failed    *struct{} `xml:"failed"`
			Forbidden *struct{} `xml:"forbidden"`
			Error     *struct{} `xml:"error"`
		} `xml:"status"`
	})
	switch r.Status {
	case IMDNDelivered:
		x.Delivery.Status.Delivered = &struct{}{}
	case IMDNFailed:
		x.Delivery.Status.Failed = &struct{}{}
	default:
		return nil, fmt.Errorf("imdn: unknown status %q", r.Status)
	}
	body, err := xml.Marshal(x)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), body...), nil
}

// ParseIMDN decodes a delivery report body. forbidden and error statuses are
// reported as IMDNFailed: for the sender they all mean "not delivered".
func ParseIMDN(body []byte) (IMDN, error) {
	var x imdnXML
	if err := xml.Unmarshal(body, &x); err != nil {
		return IMDN{}, fmt.Errorf("imdn: %w", err)
	}
	if x.MessageID == "" {
		return IMDN{}, errors.New("imdn: no message-id")
	}
	if x.Delivery == nil {
		return IMDN{}, errors.New("imdn: not a delivery notification")
	}
	r := IMDN{MessageID: x.MessageID, Recipient: x.RecipientURI}
	if t, err := time.Parse(time.RFC3339Nano, x.DateTime); err == nil {
		r.DateTime = t
	}
	s := x.Delivery.Status
	switch {
	case s.Delivered != nil:
		r.Status = IMDNDelivered
	case s.Failed != nil, s.Forbidden != nil, s.Error != nil:
		r.Status = IMDNFailed
	default:
		return IMDN{}, errors.New("imdn: no delivery status")
	}
	return r, nil
}
