package apiserver

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/sealpost/sealpost/api"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/message"
)

// batchStatus answers POST /v1/messages/status: the status of up to
// api.MaxStatusIDs messages of the caller's in one request, for a client
// that was offline and refreshes its history. Ids the caller did not send
// are listed as unknown, exactly like ids that do not exist, so nobody
// learns anything about other accounts' messages.
func (a *API) batchStatus(w http.ResponseWriter, r *http.Request) {
	from, ok := a.authorize(w, r)
	if !ok {
		return
	}
	var req api.StatusRequest
	if status, code, msg := decodeJSON(w, r, &req); status != 0 {
		a.refuse(w, status, code, msg)
		return
	}
	switch {
	case len(req.IDs) == 0:
		a.refuse(w, http.StatusBadRequest, api.CodeBadRequest, `"ids" is empty: list the ids of the messages to look up`)
		return
	case len(req.IDs) > api.MaxStatusIDs:
		a.refuse(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf(`"ids" lists %d ids; ask for at most %d at a time`, len(req.IDs), api.MaxStatusIDs))
		return
	}
	for i, id := range req.IDs {
		if err := message.CheckID(id); err != nil {
			a.refuse(w, http.StatusBadRequest, message.CodeInvalidID, fmt.Sprintf(`"ids"[%d] %q is not a message id (a UUID like 123e4567-e89b-12d3-a456-426614174000)`, i, id))
			return
		}
	}
	res := api.StatusResponse{Messages: []api.MessageStatus{}, Unknown: []string{}}
	for _, id := range req.IDs {
		m, err := a.o.Store.Message(r.Context(), from, message.NormalizeID(id))
		if errors.Is(err, store.ErrNotFound) {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		if err != nil {
			a.storeFailed(w, "reading message", err)
			return
		}
		res.Messages = append(res.Messages, statusOf(m))
	}
	writeJSON(w, http.StatusOK, res)
}
