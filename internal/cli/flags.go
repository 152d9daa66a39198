package cli

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// kiln's command line follows kubectl's habits: -o is an output format and nothing else, files go
// to --output-file, --log-format and --log-level are the root's for every command, flag values
// complete in the shell, and an unknown command is an error.

// Output formats; a command's -o accepts those it supports.
const (
	formatText = "text"
	formatWide = "wide"
	formatJSON = "json"
	formatYAML = "yaml"
)

// outputFormats are every -o value any command knows. A value outside them is no format at all,
// which lets the -o FILE of earlier releases be told apart (resolveOutputFile).
var outputFormats = []string{formatText, formatWide, formatJSON, formatYAML}

// addFormatFlag registers -o/--output, the output format, as one of formats (the first is the
// default), completed in the shell.
func addFormatFlag(cmd *cobra.Command, p *string, formats ...string) {
	cmd.Flags().StringVarP(p, "output", "o", formats[0], "output format: "+orList(formats))
	completeFlag(cmd, "output", formats...)
}

// addOutputFileFlag registers --output-file, the file a command writes its result to.
func addOutputFileFlag(cmd *cobra.Command, p *string, usage string) {
	cmd.Flags().StringVar(p, "output-file", "", usage)
	cmd.MarkFlagFilename("output-file")
}

// resolveOutputFile keeps the -o FILE of earlier releases working for one more release: an -o
// value that is no output format is the file to write, with a notice on warn. It returns the
// file to write ("" for none) and leaves *format a format the command supports.
func resolveOutputFile(warn io.Writer, format *string, file string, formats ...string) (string, error) {
	if slices.Contains(outputFormats, *format) {
		if !slices.Contains(formats, *format) {
			if len(formats) == 0 {
				return "", fmt.Errorf("-o %s: this command has no output formats; it writes to --output-file", *format)
			}
			return "", fmt.Errorf("-o %s: unknown output format (want %s)", *format, orList(formats))
		}
		return file, nil
	}
	if file != "" {
		return "", fmt.Errorf("-o %s: unknown output format, and --output-file %s is given", *format, file)
	}
	fmt.Fprintf(warn, "kiln: warning: -o FILE is deprecated; use --output-file %s\n", *format)
	file = *format
	*format = ""
	if len(formats) > 0 {
		*format = formats[0]
	}
	return file, nil
}

// Values of the root's logging flags.
var (
	logFormats = []string{"text", "json"}
	logLevels  = []string{"debug", "info", "warn", "error"}
)

// addLogFlags registers --log-format and --log-level on the root, for every command.
func addLogFlags(root *cobra.Command, g *globals) {
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", logFormats[0], "log format: "+orList(logFormats))
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "least severe log level: "+orList(logLevels))
	completeFlag(root, "log-format", logFormats...)
	completeFlag(root, "log-level", logLevels...)
}

// newLogger is the one place kiln's logger is made: format and level as the root's flags say,
// writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var l slog.Level
	if !slices.Contains(logLevels, level) || l.UnmarshalText([]byte(level)) != nil {
		return nil, fmt.Errorf("--log-level %s: unknown level (want %s)", level, orList(logLevels))
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %s: unknown format (want %s)", format, orList(logFormats))
}

// completeFlag completes the named flag of cmd with values, and no file names.
func completeFlag(cmd *cobra.Command, flag string, values ...string) {
	fn := func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var matches []cobra.Completion
		for _, v := range values {
			if strings.HasPrefix(v, toComplete) {
				matches = append(matches, v)
			}
		}
		return matches, cobra.ShellCompDirectiveNoFileComp
	}
	// Registered on the command that owns the flag (the root for a persistent one).
	if err := cmd.RegisterFlagCompletionFunc(flag, fn); err != nil {
		panic(fmt.Sprintf("cli: completion of --%s of %s: %v", flag, cmd.CommandPath(), err))
	}
}

// Values that flags of several commands take.
var (
	providers = []string{v1alpha1.ProviderQEMU, v1alpha1.ProviderMetal, v1alpha1.ProviderVSphere, v1alpha1.ProviderAWS}
	roles     = []string{v1alpha1.RoleControlPlane, v1alpha1.RoleWorker}
	// ignitionTargets are the delivery targets whose size limits Ignition configs are checked for.
	ignitionTargets = []string{v1alpha1.ProviderAWS, v1alpha1.ProviderVSphere, v1alpha1.ProviderMetal, v1alpha1.ProviderQEMU}
)

// requireKnownCommands makes every command group of the tree (a command with subcommands and
// nothing to run of its own) refuse an argument that names none of its commands, with a non-zero
// exit; without arguments it prints its help, as before. Cobra itself only checks the root's.
func requireKnownCommands(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = unknownCommand
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		cmd.ValidArgsFunction = cobra.NoFileCompletions
	}
	for _, c := range cmd.Commands() {
		requireKnownCommands(c)
	}
}

// unknownCommand is the Args of a command group: no argument is one of its commands, or Find would
// have chosen it.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return fmt.Errorf("unknown command %q for %q%s; run '%s --help' for its commands", args[0], cmd.CommandPath(), hint, cmd.CommandPath())
}

// orList writes values as "a, b or c".
func orList(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}
