package web

import (
	"html/template"

	"github.com/sealpost/sealpost/client"
	"github.com/sealpost/sealpost/message"
)

// statusInfo is how one status of an outgoing message is shown: the
// manual's name for it and its meaning (the tooltip and accessible label of
// the icon), and the icon.
type statusInfo struct {
	Name    string
	Meaning string
	Icon    template.HTML
}

// The manual's table of status icons, in its words (PrivateWave and
// PrivateServer are Sealpost and sealpostd here). The icons are our own
// inline SVG, drawn with the text colour so they follow the contrast of the
// theme.
var statuses = map[message.Status]statusInfo{
	message.Sending: {
		Name:    "Sending message",
		Meaning: "Sealpost is trying to send the message to its recipient via the server",
		Icon: `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">` +
			`<circle cx="8" cy="8" r="6.5" fill="none" stroke="currentColor" stroke-width="1.5"/>` +
			`<path d="M8 4.5V8l2.5 1.5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round"/></svg>`,
	},
	message.Enqueued: {
		Name:    "Message enqueued",
		Meaning: "The message is stored encrypted on the server and will be delivered to the recipient as soon as possible",
		Icon: `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">` +
			`<path d="M3 8.5l3 3 7-7" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/></svg>`,
	},
	message.Delivered: {
		Name:    "Message delivered",
		Meaning: "The message has been delivered to the recipient's device, who could have read it or not",
		Icon: `<svg viewBox="0 0 20 16" width="20" height="16" aria-hidden="true" focusable="false">` +
			`<path d="M1.5 8.5l3 3 7-7M8 11.5l.5.5 7-7.5" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/></svg>`,
	},
	message.Error: {
		Name:    "Error sending message",
		Meaning: "The message could not be sent or delivered: it was refused, timed out, or expired",
		Icon: `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">` +
			`<path d="M8 1.5l7 13H1z" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/>` +
			`<path d="M8 6v4M8 12v.5" stroke="currentColor" stroke-width="1.6" stroke-linecap="round"/></svg>`,
	},
}

// statusOf returns how s is shown; Expired (the server's word) shows as
// Error, as in the core's StatusMark.
func statusOf(s message.Status) statusInfo {
	if s == message.Expired {
		s = message.Error
	}
	if i, ok := statuses[s]; ok {
		return i
	}
	return statusInfo{Name: client.StatusMark(s), Meaning: client.StatusMark(s)}
}

// statusClass is the CSS class and data-status value of a status.
func statusClass(s message.Status) string {
	if s == message.Expired {
		return string(message.Error)
	}
	return string(s)
}
