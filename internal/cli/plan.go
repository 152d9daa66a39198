package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// planHelp explains a plan's lines; kiln plan and kiln apply show it in their help.
const planHelp = `A plan has one line per action, in the order apply takes them, each with its machine, pool and
reason:

  create   a machine the group is missing (a new pool, a pool scaled up)
  replace  a machine that failed or runs an old image: its replacement (named after "by") is created
           first, the old machine deleted once the new one is up
  delete   a machine that goes: failed, the old machine of a finished replacement, or surplus (its
           pool scaled down, removed or renamed); at most maxUnavailable healthy machines of a pool
           per pass, and never the control plane below etcd quorum
  stop     a failed machine powered off and kept for forensics (--keep-failed)
  hold     something held back this pass, and why (a guard, a budget, a replacement under way)

A delete marked "healthy, asks first" (in JSON: "confirm": true, and "needsConfirmation": true on the
plan) takes a healthy machine away without a replacement: kiln apply asks before it acts on such a
plan, and without a terminal refuses it unless --yes.`

type planOptions struct {
	specPath   string
	format     string
	kubeconfig string
}

func newPlan(g *globals) *cobra.Command {
	o := planOptions{}
	cmd := &cobra.Command{
		Use:   "plan -f cluster.yaml",
		Short: "Show what kiln apply would do now, and why, without doing it",
		Long: `plan lists the cluster's machines, judges their health and decides, as one pass of kiln apply
would, what to create, replace, delete, power off and hold back; it prints that plan and does
nothing: it neither calls the provider to change anything nor stores what apply remembers. It only
reads, so it never waits for the lease of a kiln apply that is running.

` + planHelp + `

With -o json or -o yaml the plan is a versioned document (apiVersion kiln.dev/v1alpha1, kind Plan).
kiln apply --dry-run prints the same plan.`,
		Example: `  kiln plan -f cluster.yaml
  kiln plan -f cluster.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runPlan(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.specPath, "file", "f", "cluster.yaml", "cluster spec")
	addFormatFlag(cmd, &o.format, formatText, formatJSON, formatYAML)
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "also judge machines by their Node's Ready condition, read with this kubeconfig")
	return cmd
}

func runPlan(ctx context.Context, g *globals, o planOptions) error {
	if _, err := resolveOutputFile(g.errOut, &o.format, "", formatText, formatJSON, formatYAML); err != nil {
		return err
	}
	c, err := loadSpec(o.specPath)
	if err != nil {
		return err
	}
	p, err := g.provider(ctx, c, o.specPath)
	if err != nil {
		return err
	}
	// What apply would say it does (such as about bootstrap tokens) is not for plan: warnings only.
	log := g.log
	if g.logLevel == "debug" || g.logLevel == "info" {
		if log, err = newLogger(g.errOut, g.logFormat, "warn"); err != nil {
			return err
		}
	}
	e, keeper := g.executor(c, p, log, applyOptions{kubeconfig: o.kubeconfig})
	e.Nodes = keeper // as apply judges: by the Nodes once the API answers kiln, by the probes before
	if err := withNodes(e, o.kubeconfig); err != nil {
		return err
	}
	r, err := e.Plan(ctx)
	if err != nil {
		return err
	}
	return writePlan(g.out, o.format, c, r.Plan)
}

// writePlan writes plan p of cluster c in format: text for people, or the plan's versioned document.
func writePlan(w io.Writer, format string, c *v1alpha1.Cluster, p reconcile.Plan) error {
	if format == formatText {
		return p.WriteText(w)
	}
	return printStructured(w, format, p.Document(c.Metadata.Name))
}

// withNodes lets e read the Ready condition of the cluster's Nodes, and drain them, with kubeconfig
// ("" for not at all).
func withNodes(e *converge.Executor, kubeconfig string) error {
	if kubeconfig == "" {
		return nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	e.Nodes = converge.KubeNodes{Client: client}
	return nil
}
