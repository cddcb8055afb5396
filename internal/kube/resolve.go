package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/pathtrace/pathtrace/internal/kube/cri"
)

// PodLister lists the pod sandboxes on this node: a *cri.Client.
type PodLister interface {
	Pods(ctx context.Context) ([]cri.Pod, error)
}

// Resolver finds the pods the user names among this node's pod sandboxes, and asks the
// Kubernetes API (when there is one) where the others run. The node's pods are listed once, on
// the first Resolve. Safe for concurrent use.
type Resolver struct {
	// CRI lists the node's pods (required).
	CRI PodLister
	// Source names where CRI's pods come from in errors ("CRI socket /run/containerd/containerd.sock").
	Source string
	// API is the fallback for pods not on this node; nil when there is none, and then APIErr
	// says why (a *NoAPIError when no credentials were found).
	API    *API
	APIErr error
	// Node is this node's name, to tell "scheduled here but not running yet" from "runs on
	// another node"; "" is the host name.
	Node string

	mu      sync.Mutex
	pods    []cri.Pod
	listed  bool
	listErr error
}

// NewResolver is a Resolver over the node's pods with the API that LoadAPI(opts) finds, if any.
// A CRI client given as pods names its socket in errors.
func NewResolver(pods PodLister, opts APIOptions) *Resolver {
	r := &Resolver{CRI: pods}
	if c, ok := pods.(*cri.Client); ok {
		r.Source = "CRI socket " + c.Socket()
	}
	r.API, r.APIErr = LoadAPI(opts)
	return r
}

// Pods is the node's pod sandboxes, listed on first use.
func (r *Resolver) Pods(ctx context.Context) ([]cri.Pod, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.listed {
		r.pods, r.listErr = r.CRI.Pods(ctx)
		if r.listErr == nil {
			r.listed = true
		}
	}
	return r.pods, r.listErr
}

// Resolve finds the pod ref names on this node. Of a pod's sandboxes the newest ready one is
// taken, a stopped one (Ready false, its netns possibly gone) only when there is no ready one.
//
// Errors, each saying what to type instead:
//   - *AmbiguousError: a name without namespace that is in several namespaces;
//   - *HostNetworkError: the pod uses the node's network (returned with the pod);
//   - *OtherNodeError: not here, and the API says it runs on another node;
//   - *NotFoundError: neither here nor (if consulted) in the API, with close names as suggestions.
func (r *Resolver) Resolve(ctx context.Context, ref PodRef) (cri.Pod, error) {
	return r.ResolveFlag(ctx, ref, "")
}

// ResolveFlag is Resolve for the value of a flag (--src, --dst): errors that suggest tracing by
// address say "--src 10.1.2.3" rather than "--src or --dst".
func (r *Resolver) ResolveFlag(ctx context.Context, ref PodRef, flag string) (cri.Pod, error) {
	pods, err := r.Pods(ctx)
	if err != nil {
		return cri.Pod{}, fmt.Errorf("pod %s: %w", ref, err)
	}
	var match []cri.Pod
	for _, p := range pods {
		if p.Name == ref.Name && (ref.Namespace == "" || p.Namespace == ref.Namespace) {
			match = append(match, p)
		}
	}
	if len(match) > 0 {
		if ref.Namespace == "" {
			if nss := namespaces(match); len(nss) > 1 {
				return cri.Pod{}, &AmbiguousError{Name: ref.Name, Namespaces: nss}
			}
		}
		p := best(match)
		if p.HostNetwork {
			return p, &HostNetworkError{Pod: p, Flag: flag}
		}
		return p, nil
	}
	return cri.Pod{}, r.notHere(ctx, ref, pods, flag)
}

// best is the newest ready sandbox, else the newest stopped one.
func best(ps []cri.Pod) cri.Pod {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Ready != ps[j].Ready {
			return ps[i].Ready
		}
		return ps[i].CreatedAt.After(ps[j].CreatedAt)
	})
	return ps[0]
}

func namespaces(ps []cri.Pod) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if !seen[p.Namespace] {
			seen[p.Namespace] = true
			out = append(out, p.Namespace)
		}
	}
	sort.Strings(out)
	return out
}

// notHere explains a pod that has no sandbox on this node, asking the API where it is.
func (r *Resolver) notHere(ctx context.Context, ref PodRef, pods []cri.Pod, flag string) error {
	keys := map[string]bool{}
	for _, p := range pods {
		keys[p.Key()] = true
	}
	nf := &NotFoundError{Ref: ref, Source: r.Source, PodsHere: len(keys), Suggestions: suggest(ref, pods)}
	if r.API == nil {
		nf.APINote = "the Kubernetes API was not consulted"
		if r.APIErr != nil {
			nf.APINote += ": " + r.APIErr.Error()
		}
		return nf
	}
	var found []APIPod
	if ref.Namespace != "" {
		p, err := r.API.Pod(ctx, ref.Namespace, ref.Name)
		switch {
		case errors.Is(err, ErrPodNotFound):
		case err != nil:
			nf.APINote = "the Kubernetes API could not be asked: " + apiHint(err, r.API, false)
			return nf
		default:
			found = append(found, p)
		}
	} else {
		ps, err := r.API.PodsNamed(ctx, ref.Name)
		if err != nil {
			nf.APINote = "the Kubernetes API could not be asked: " + apiHint(err, r.API, true)
			return nf
		}
		found = ps
	}
	switch len(found) {
	case 0:
		nf.APINote = "the Kubernetes API (" + r.API.Source + ") has no such pod either"
		return nf
	case 1:
	default:
		var nss []string
		for _, p := range found {
			nss = append(nss, p.Namespace)
		}
		sort.Strings(nss)
		return &AmbiguousError{Name: ref.Name, Namespaces: nss, FromAPI: true}
	}
	p := found[0]
	node := r.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	return &OtherNodeError{Pod: p, ThisNode: node, Source: r.Source, Flag: flag}
}

// apiHint adds what a 401/403 usually means to an API error; listed says the request was the
// list across namespaces, which a namespace in the pod's name avoids.
func apiHint(err error, api *API, listed bool) string {
	var se *APIStatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusUnauthorized:
			return err.Error() + " (the credentials of " + api.Source + " were not accepted)"
		case http.StatusForbidden:
			if listed {
				return err.Error() + " (" + api.Source + " may not list pods in all namespaces: name the pod as NAMESPACE/POD, or use a kubeconfig that may)"
			}
			return err.Error() + " (" + api.Source + " may not read pods there: use a kubeconfig that may)"
		}
	}
	return err.Error()
}

// NotFoundError: the pod has no sandbox on this node, and the API (if consulted) does not
// know it either.
type NotFoundError struct {
	Ref         PodRef
	Source      string   // where the node's pods came from
	PodsHere    int      // how many pods this node has (ready or not)
	Suggestions []string // close names on this node, "namespace/name"
	APINote     string   // what the API said, or why it was not consulted
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s not found on this node (%d %s here", e.Ref, e.PodsHere, plural(e.PodsHere, "pod", "pods"))
	if e.Source != "" {
		fmt.Fprintf(&b, ", from %s", e.Source)
	}
	if len(e.Suggestions) > 0 {
		fmt.Fprintf(&b, "; did you mean %s?", strings.Join(e.Suggestions, ", "))
	}
	b.WriteString(")")
	if e.APINote != "" {
		b.WriteString("; " + e.APINote)
	}
	return b.String()
}

// AmbiguousError: a pod name without namespace that several namespaces have.
type AmbiguousError struct {
	Name       string
	Namespaces []string
	FromAPI    bool // the namespaces are the API's (none of them has the pod on this node)
}

func (e *AmbiguousError) Error() string {
	uses := make([]string, len(e.Namespaces))
	for i, ns := range e.Namespaces {
		uses[i] = ns + "/" + e.Name
	}
	where := ""
	if e.FromAPI {
		where = " (none of them on this node)"
	}
	return fmt.Sprintf("pod %s is in namespaces %s%s: use %s", e.Name, strings.Join(e.Namespaces, ", "), where, orList(uses))
}

// HostNetworkError: the pod runs in the node's own network namespace, so its address is the
// node's and its packets are the node's.
type HostNetworkError struct {
	Pod  cri.Pod
	Flag string
}

func (e *HostNetworkError) Error() string {
	msg := fmt.Sprintf("pod %s uses the host network: it has no network namespace of its own and its IP is the node's", e.Pod.Key())
	if len(e.Pod.IPs) > 0 {
		msg += fmt.Sprintf(" (%s); trace the node's address instead: %s %s", joinAddrs(e.Pod.IPs), flagOr(e.Flag), e.Pod.IPs[0])
	} else {
		msg += "; trace the node's address instead"
	}
	return msg
}

// OtherNodeError: the pod is not on this node; the API says where it is.
type OtherNodeError struct {
	Pod      APIPod
	ThisNode string // this node's name, if known
	Source   string // where this node's pods came from
	Flag     string
}

func (e *OtherNodeError) Error() string {
	key := e.Pod.Key()
	byIP := ""
	if len(e.Pod.IPs) > 0 {
		byIP = fmt.Sprintf(", or trace by IP %s %s", flagOr(e.Flag), e.Pod.IPs[0])
		if e.Pod.HostNetwork {
			byIP += " (a host-network pod: that is node " + e.Pod.Node + "'s address)"
		}
	}
	switch {
	case e.Pod.Node == "":
		return fmt.Sprintf("pod %s is not scheduled on any node yet (phase %s)", key, orUnknown(e.Pod.Phase))
	case e.ThisNode != "" && e.Pod.Node == e.ThisNode:
		src := "the container runtime"
		if e.Source != "" {
			src += " (" + e.Source + ")"
		}
		return fmt.Sprintf("pod %s is scheduled on this node (%s, phase %s) but %s has no sandbox for it: is it still starting, or is --cri-socket the runtime the kubelet uses?",
			key, e.Pod.Node, orUnknown(e.Pod.Phase), src)
	}
	return fmt.Sprintf("pod %s runs on node %s, not here: run pathtrace on %s%s", key, e.Pod.Node, e.Pod.Node, byIP)
}

func flagOr(f string) string {
	if f == "" {
		return "--src/--dst"
	}
	return f
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func orList(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// suggest picks up to 5 pods on this node whose names are close to ref's: the same name in
// another namespace, names that start with it (a Deployment's "web" for "web-7c9d8-x2x"), then
// names within a small edit distance.
func suggest(ref PodRef, pods []cri.Pod) []string {
	type cand struct {
		key   string
		score int // lower is better
	}
	best := map[string]int{}
	for _, p := range pods {
		score := -1
		name := p.Name
		sameNS := ref.Namespace == "" || p.Namespace == ref.Namespace
		switch {
		case name == ref.Name:
			score = 0 // other namespace
		case strings.HasPrefix(name, ref.Name+"-"):
			score = 10 + len(name) - len(ref.Name)
		case strings.HasPrefix(name, ref.Name):
			score = 50 + len(name) - len(ref.Name)
		case strings.Contains(name, ref.Name) && len(ref.Name) >= 3:
			score = 200 + len(name) - len(ref.Name)
		default:
			if d := editDistance(name, ref.Name); d <= maxDistance(ref.Name) {
				score = 100 + d
			}
		}
		if score < 0 {
			continue
		}
		if !sameNS {
			score += 1000
			if name == ref.Name {
				score = 0
			}
		}
		k := p.Key()
		if s, ok := best[k]; !ok || score < s {
			best[k] = score
		}
	}
	cs := make([]cand, 0, len(best))
	for k, s := range best {
		cs = append(cs, cand{k, s})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].score != cs[j].score {
			return cs[i].score < cs[j].score
		}
		return cs[i].key < cs[j].key
	})
	var out []string
	for _, c := range cs {
		if len(out) == 5 {
			break
		}
		out = append(out, c.key)
	}
	return out
}

func maxDistance(s string) int {
	if n := len(s) / 3; n > 2 {
		return n
	}
	return 2
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
