package cli

import (
	"runtime/debug"
	"strings"
)

// commit may be set at link time, for builds without VCS stamping:
//
//	go build -ldflags "-X github.com/sealpost/sealpost/internal/cli.commit=$(git rev-parse HEAD)"
//
// It is the one package variable here, because the linker can set nothing else.
var commit string

// Version says which build this is: the module version, the commit it was
// built from (with "+changes" when the work tree was modified) and the
// commit's time. Builds without VCS information (go build -buildvcs=false,
// go run, builds outside a git checkout) say so instead of guessing.
func Version(program string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	return program + " " + describe(info, commit)
}

func describe(info *debug.BuildInfo, linked string) string {
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = linked
	}
	parts := []string{version}
	switch {
	case rev == "":
		parts = append(parts, "commit unknown (built without VCS stamping; see go help buildvcs)")
	default:
		c := "commit " + rev
		if settings["vcs.modified"] == "true" {
			c += "+changes"
		}
		if t := settings["vcs.time"]; t != "" {
			c += " (" + t + ")"
		}
		parts = append(parts, c)
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, ", ")
}
