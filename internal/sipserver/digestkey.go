package sipserver

import "github.com/sealpost/sealpost/internal/auth"

// newDigester uses the nonce key of the options, or a random one.
func newDigester(o Options) *auth.Digester {
	if o.NonceKey != nil {
		return auth.NewDigesterWithKey(o.Domain, o.Clock, o.NonceTTL, o.NonceKey)
	}
	return auth.NewDigester(o.Domain, o.Clock, o.NonceTTL)
}
