package sipserver

import "io"

// SetLibraryLogOutput redirects sipgo's package-level log for a test and
// returns a function that restores it.
func SetLibraryLogOutput(w io.Writer) (restore func()) {
	libraryLogMu.Lock()
	old := libraryLogOut
	libraryLogOut = w
	libraryLogMu.Unlock()
	return func() {
		libraryLogMu.Lock()
		libraryLogOut = old
		libraryLogMu.Unlock()
	}
}
