package store

// Snapshot is everything a store holds, read in one consistent view, for
// moving a deployment from one backend to another (sealpostd store copy).
// Messages carry every field, with their sealed text while enqueued, and
// keep their Seq, so the copy lists each mailbox in the same order; data
// keys stay wrapped by the master key, which the copy never sees.
type Snapshot struct {
	Accounts []Account
	Tokens   []Token
	Messages []Message // in Seq order
	Reports  []Report  // in Seq order
	DataKeys map[int64][]byte
}
