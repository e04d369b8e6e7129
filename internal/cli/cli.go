// Package cli runs a command-line program from a command table, as mox's
// main.go does: each command is declared once (name, arguments, one-line
// help, example, flags, function) and the help pages, usage errors and exit
// codes all come from that table, so they cannot drift apart.
//
// The conventions, the same for sealpostd and sealpost:
//
//   - `help`, `--help` and `-h` print to stdout and exit 0; `help COMMAND`
//     and `COMMAND --help` print that command's usage, description, example
//     and flags.
//   - A usage error (unknown command or flag, wrong number of arguments, a
//     Run returning a UsageError) prints one line and "see PROG help
//     COMMAND" to stderr and exits 2.
//   - Any other error from Run prints "PROG COMMAND: error" to stderr and
//     exits 1.
//   - `--version` (and `version`) print the program's version with the
//     build's commit.
//   - The first words of a command group alone (`sealpostd user`) list the
//     group's commands, on stderr with exit 2, since nothing was done.
//
// Flags may stand before, between or after the command words and
// arguments; after "--" everything is an argument.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Command is one row of the table.
type Command struct {
	Name    string // the command words, "user add"
	Args    string // the positional arguments as shown in usage, "NAME"; flags are added from Flags
	Help    string // one line: what it does
	Example string // one or more lines of shell, shown under "Example:"
	// NArgs is the number of positional arguments Run needs; -1 lets Run
	// check them itself (returning a UsageError).
	NArgs int
	// Flags binds the command's own flags (the program's global flags are
	// bound by Program.Globals). Nil for none.
	Flags func(fs *flag.FlagSet)
	// Run does the work with the positional arguments. A UsageError exits
	// 2 with a pointer to the help; any other error exits 1.
	Run func(args []string) error
}

// UsageError is an error in how a command was called; it exits 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// ExitError ends the program with Code after printing Err (if not nil) as
// a runtime error. For commands whose exit code says more than 0 or 1.
type ExitError struct {
	Code int
	Err  error
}

func (e ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}
func (e ExitError) Unwrap() error { return e.Err }

// Program is a command-line program made of a command table.
type Program struct {
	Name     string // "sealpostd"
	Summary  string // first line of the help page
	Commands []Command
	// Default is the command run when no command word is given; empty
	// prints the help page to stderr and exits 2.
	Default string
	// Globals binds the flags every command takes (settings); GlobalsTitle
	// heads their list on the help page.
	Globals      func(fs *flag.FlagSet)
	GlobalsTitle string
	// Prepare runs after the flags are parsed and before the command: it
	// may read the environment or a config file. fs holds the global and
	// the command's flags, to tell which were given. Its error is a usage
	// error (exit 2).
	Prepare func(cmd *Command, fs *flag.FlagSet) error
	// Footer ends the main help page (a few lines on where to read more).
	Footer string
}

// Run runs the program with the arguments after the program name and
// returns the exit code.
func (p *Program) Run(args []string, stdout, stderr io.Writer) int {
	args, help, version := takeBuiltinFlags(args)
	if version {
		fmt.Fprintln(stdout, Version(p.Name))
		return 0
	}
	// First pass: find the command words, with every flag of every command
	// known (so that a flag's value is not taken for a word).
	words, err := parseInterleaved(p.shadowFlags(), args)
	if err != nil {
		if cmd, _ := p.find(words); cmd != nil {
			fmt.Fprintf(stderr, "%s %s: %v\nsee %s help %s\n", p.Name, cmd.Name, err, p.Name, cmd.Name)
		} else {
			fmt.Fprintf(stderr, "%s: %v\nsee %s help\n", p.Name, err, p.Name)
		}
		return 2
	}
	if len(words) > 0 && words[0] == "help" {
		return p.help(words[1:], stdout, stderr)
	}
	if len(words) == 1 && words[0] == "version" {
		fmt.Fprintln(stdout, Version(p.Name))
		return 0
	}
	if len(words) == 0 && help {
		p.writeHelp(stdout)
		return 0
	}
	cmd, _ := p.find(words)
	if cmd == nil && len(words) == 0 && p.Default != "" {
		cmd, _ = p.find(strings.Fields(p.Default))
	}
	if cmd == nil {
		if len(words) == 0 {
			p.writeHelp(stderr)
			return 2
		}
		if group := p.group(words); len(group) > 0 {
			if help {
				p.writeList(stdout, group)
				return 0
			}
			fmt.Fprintf(stderr, "%s %s: which one?\n", p.Name, strings.Join(words, " "))
			p.writeList(stderr, group)
			return 2
		}
		fmt.Fprintf(stderr, "%s: unknown command %q\nsee %s help\n", p.Name, strings.Join(words, " "), p.Name)
		return 2
	}
	if help {
		p.writeCommandHelp(stdout, cmd)
		return 0
	}
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "%s %s: %v\nsee %s help %s\n", p.Name, cmd.Name, err, p.Name, cmd.Name)
		return 2
	}
	// Second pass: only the global flags and this command's.
	fs := p.commandFlags(cmd)
	all, err := parseInterleaved(fs, args)
	if err != nil {
		return usageErr(err)
	}
	pos := all
	if len(words) > 0 { // not the default command: drop its name
		pos = all[len(strings.Fields(cmd.Name)):]
	}
	if cmd.NArgs >= 0 && len(pos) != cmd.NArgs {
		if cmd.NArgs == 0 {
			return usageErr(fmt.Errorf("takes no arguments, got %q", strings.Join(pos, " ")))
		}
		return usageErr(fmt.Errorf("want %s, got %d argument(s)", cmd.Args, len(pos)))
	}
	if p.Prepare != nil {
		if err := p.Prepare(cmd, fs); err != nil {
			return usageErr(err)
		}
	}
	if err := cmd.Run(pos); err != nil {
		var ue UsageError
		var ee ExitError
		switch {
		case errors.As(err, &ue):
			return usageErr(err)
		case errors.As(err, &ee):
			if ee.Err != nil {
				fmt.Fprintf(stderr, "%s %s: %v\n", p.Name, cmd.Name, ee.Err)
			}
			return ee.Code
		}
		fmt.Fprintf(stderr, "%s %s: %v\n", p.Name, cmd.Name, err)
		return 1
	}
	return 0
}

// takeBuiltinFlags removes -h, --help and --version (before any "--").
func takeBuiltinFlags(args []string) (rest []string, help, version bool) {
	for i, a := range args {
		if a == "--" {
			return append(rest, args[i:]...), help, version
		}
		switch a {
		case "-h", "-help", "--help":
			help = true
		case "-version", "--version":
			version = true
		default:
			rest = append(rest, a)
		}
	}
	return rest, help, version
}

// parseInterleaved parses flags wherever they stand among the words and
// returns the words in order (on an error, those before it). After "--"
// everything is a word.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return words, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return words, nil
		}
		used := len(args) - len(rest)
		if used > 0 && args[used-1] == "--" {
			return append(words, rest...), nil
		}
		words = append(words, rest[0])
		args = rest[1:]
	}
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed here, in one line
	fs.Usage = func() {}
	return fs
}

// shadowFlags knows every flag of every command, as bool or string, with
// values that go nowhere: enough to tell flags from words.
func (p *Program) shadowFlags() *flag.FlagSet {
	shadow := newFlagSet(p.Name)
	add := func(bind func(*flag.FlagSet)) {
		if bind == nil {
			return
		}
		scratch := newFlagSet(p.Name)
		bind(scratch)
		scratch.VisitAll(func(f *flag.Flag) {
			if shadow.Lookup(f.Name) != nil {
				return
			}
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				shadow.Bool(f.Name, false, "")
			} else {
				shadow.String(f.Name, "", "")
			}
		})
	}
	add(p.Globals)
	for _, c := range p.Commands {
		add(c.Flags)
	}
	return shadow
}

func (p *Program) commandFlags(cmd *Command) *flag.FlagSet {
	fs := newFlagSet(p.Name + " " + cmd.Name)
	if p.Globals != nil {
		p.Globals(fs)
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	return fs
}

// find returns the command whose name is the longest prefix of words, and
// the words after it.
func (p *Program) find(words []string) (*Command, []string) {
	var best *Command
	var bestLen int
	for i := range p.Commands {
		name := strings.Fields(p.Commands[i].Name)
		if len(name) > len(words) || len(name) <= bestLen {
			continue
		}
		if strings.Join(words[:len(name)], " ") == p.Commands[i].Name {
			best, bestLen = &p.Commands[i], len(name)
		}
	}
	if best == nil {
		return nil, words
	}
	return best, words[bestLen:]
}

// group returns the commands whose names start with words (`user`).
func (p *Program) group(words []string) []*Command {
	prefix := strings.Join(words, " ") + " "
	var out []*Command
	for i := range p.Commands {
		if strings.HasPrefix(p.Commands[i].Name, prefix) {
			out = append(out, &p.Commands[i])
		}
	}
	return out
}

func (p *Program) help(words []string, stdout, stderr io.Writer) int {
	if len(words) == 0 {
		p.writeHelp(stdout)
		return 0
	}
	cmd, rest := p.find(words)
	if cmd != nil && len(rest) == 0 {
		p.writeCommandHelp(stdout, cmd)
		return 0
	}
	if group := p.group(words); len(group) > 0 {
		p.writeList(stdout, group)
		return 0
	}
	fmt.Fprintf(stderr, "%s help: unknown command %q\nsee %s help\n", p.Name, strings.Join(words, " "), p.Name)
	return 2
}

func (p *Program) writeHelp(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage: %s COMMAND [ARGS] [FLAGS]", p.Summary, p.Name)
	if p.Default != "" {
		fmt.Fprintf(w, "   (no COMMAND: %s)", p.Default)
	}
	fmt.Fprintln(w, "\n\nCommands:")
	all := make([]*Command, len(p.Commands))
	for i := range p.Commands {
		all[i] = &p.Commands[i]
	}
	p.writeList(w, all)
	fmt.Fprintf(w, "  %-34s %s\n", "help [COMMAND]", "this page, or one command's usage, description and example")
	fmt.Fprintf(w, "  %-34s %s\n", "--version", "the version and the commit it was built from")
	if p.Globals != nil {
		fs := newFlagSet(p.Name)
		p.Globals(fs)
		fmt.Fprintf(w, "\n%s\n", p.GlobalsTitle)
		writeFlags(w, fs)
	}
	if p.Footer != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(p.Footer, "\n"))
	}
}

// synopsis is a command's name, arguments and flags: "user add NAME
// [--password-stdin]".
func (p *Program) synopsis(c *Command) string {
	parts := []string{c.Name}
	if c.Args != "" {
		parts = append(parts, c.Args)
	}
	if c.Flags != nil {
		fs := newFlagSet(p.Name)
		c.Flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			kind, _ := flag.UnquoteUsage(f)
			if kind == "" {
				parts = append(parts, "[--"+f.Name+"]")
			} else {
				parts = append(parts, "[--"+f.Name+" "+kind+"]")
			}
		})
	}
	return strings.Join(parts, " ")
}

func (p *Program) writeList(w io.Writer, cmds []*Command) {
	for _, c := range cmds {
		use := p.synopsis(c)
		if len(use) > 34 {
			fmt.Fprintf(w, "  %s\n  %-34s %s\n", use, "", c.Help)
		} else {
			fmt.Fprintf(w, "  %-34s %s\n", use, c.Help)
		}
	}
}

func (p *Program) writeCommandHelp(w io.Writer, c *Command) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", p.Name, p.synopsis(c), c.Help)
	if c.Example != "" {
		fmt.Fprintln(w, "\nExample:")
		for _, line := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
			fmt.Fprintln(w, "  "+line)
		}
	}
	if c.Flags != nil {
		fs := newFlagSet(p.Name)
		c.Flags(fs)
		fmt.Fprintln(w, "\nFlags:")
		writeFlags(w, fs)
	}
	if p.Globals != nil {
		fmt.Fprintf(w, "\nIt also takes every setting that `%s help` lists.\n", p.Name)
	}
}

// writeFlags lists flags as --name VALUE, with the help and the default
// on the next line.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintln(w, line)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "        %s\n", usage)
	}
}
