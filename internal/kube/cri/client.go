package cri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultSockets are the CRI sockets looked for, in order: containerd's, then CRI-O's (both of
// its usual places).
var DefaultSockets = []string{
	"/run/containerd/containerd.sock",
	"/var/run/crio/crio.sock",
	"/run/crio/crio.sock",
}

// DialTimeout bounds Dial's connect and Version call when the context has no earlier deadline.
const DialTimeout = 5 * time.Second

// statusWorkers is how many PodSandboxStatus calls Pods has in flight.
const statusWorkers = 8

// maxMsgSize is what a response may weigh: a node with hundreds of pods answers ListPodSandbox
// with more than gRPC's default 4 MiB.
const maxMsgSize = 64 << 20

// Client talks CRI v1 RuntimeService to the node's container runtime.
type Client struct {
	socket  string
	conn    *grpc.ClientConn
	rt      runtimeapi.RuntimeServiceClient
	runtime string // "containerd 1.6.20", from Version
}

// FindSocket returns the first of DefaultSockets that exists under root ("" or "/" for the
// node's own filesystem, "/host" from a debug pod), as a path that includes root. Its error
// names every path tried.
func FindSocket(root string) (string, error) {
	var tried []string
	for _, s := range DefaultSockets {
		p := s
		if root != "" && root != "/" {
			p = filepath.Join(root, s)
		}
		tried = append(tried, p)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Type() == os.ModeSocket {
			return p, nil
		}
	}
	return "", fmt.Errorf("no CRI socket found (tried %s): is containerd or CRI-O running on this node? use --cri-socket", strings.Join(tried, ", "))
}

// Dial connects to the CRI socket and asks the runtime its version, so that a wrong socket, a
// runtime that is not running or one that does not serve CRI v1 fails here.
func Dial(ctx context.Context, socket string) (*Client, error) {
	hint := "(is containerd running? use --cri-socket)"
	if strings.Contains(socket, "crio") {
		hint = "(is CRI-O running? use --cri-socket)"
	}
	fail := func(err error) error { return fmt.Errorf("CRI socket %s: %w %s", socket, err, hint) }

	fi, err := os.Stat(socket)
	if err != nil {
		return nil, fail(errors.Unwrap(err))
	}
	if fi.Mode().Type() != os.ModeSocket {
		return nil, fail(errors.New("not a unix socket"))
	}
	conn, err := grpc.NewClient("passthrough:///"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)),
	)
	if err != nil {
		return nil, fail(err)
	}
	c := &Client{socket: socket, conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}
	vctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	v, err := c.rt.Version(vctx, &runtimeapi.VersionRequest{})
	if err != nil {
		conn.Close()
		switch {
		case status.Code(err) == codes.Unimplemented:
			hint = "(the runtime does not serve CRI v1: is its CRI plugin disabled, as in the containerd that Docker installs? use --cri-socket)"
		case strings.Contains(err.Error(), "permission denied"):
			hint = "(the CRI socket is root's: run pathtrace as root)"
		}
		return nil, fail(fmt.Errorf("CRI v1 Version: %w", err))
	}
	c.runtime = strings.TrimSpace(v.GetRuntimeName() + " " + v.GetRuntimeVersion())
	return c, nil
}

// Socket is the socket the client is connected to.
func (c *Client) Socket() string { return c.socket }

// Runtime is the runtime's name and version as it answered Version ("containerd 1.6.20").
func (c *Client) Runtime() string { return c.runtime }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Pods lists every pod sandbox the runtime knows on this node, ready or not, sorted by
// namespace and name, then ready first and newest first. A sandbox that vanishes between the
// list and its status is left out; one whose status fails is kept with what the list says.
func (c *Client) Pods(ctx context.Context) ([]Pod, error) {
	list, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox on %s: %w", c.socket, err)
	}
	// Statuses are asked statusWorkers at a time: a node has a hundred sandboxes or more.
	items := list.GetItems()
	found := make([]*Pod, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(statusWorkers, len(items)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sb := items[i]
				st, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
				switch {
				case status.Code(err) == codes.NotFound:
					// Removed since the list: nothing to resolve any more.
					continue
				case err != nil:
					// A sandbox the runtime cannot describe (containerd's SANDBOX_UNKNOWN after a
					// failed start): listed by name and state, without addresses or netns.
					st = nil
				}
				p := podFromStatus(sb, st)
				found[i] = &p
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("CRI PodSandboxStatus on %s: %w", c.socket, err)
	}
	pods := make([]Pod, 0, len(items))
	for _, p := range found {
		if p != nil {
			pods = append(pods, *p)
		}
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Ready != b.Ready {
			return a.Ready
		}
		return a.CreatedAt.After(b.CreatedAt)
	})
	return pods, nil
}

// podFromStatus builds a Pod from a ListPodSandbox item and its verbose status.
func podFromStatus(sb *runtimeapi.PodSandbox, resp *runtimeapi.PodSandboxStatusResponse) Pod {
	st := resp.GetStatus()
	md := st.GetMetadata()
	if md == nil {
		md = sb.GetMetadata()
	}
	p := Pod{
		Namespace: md.GetNamespace(),
		Name:      md.GetName(),
		UID:       md.GetUid(),
		SandboxID: sb.GetId(),
		Ready:     sb.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY,
	}
	created := sb.GetCreatedAt()
	if st != nil {
		p.Ready = st.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
		if st.GetCreatedAt() != 0 {
			created = st.GetCreatedAt()
		}
	}
	if created != 0 {
		p.CreatedAt = time.Unix(0, created)
	}
	p.HostNetwork = st.GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if net := st.GetNetwork(); net != nil {
		p.IPs = appendIP(p.IPs, net.GetIp())
		for _, a := range net.GetAdditionalIps() {
			p.IPs = appendIP(p.IPs, a.GetIp())
		}
	}
	if !p.HostNetwork {
		p.NetnsPath = netnsFromInfo(resp.GetInfo())
	}
	return p
}

// appendIP adds s to ips when it is a valid address not already there.
func appendIP(ips []netip.Addr, s string) []netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ips
	}
	a = a.Unmap()
	for _, x := range ips {
		if x == a {
			return ips
		}
	}
	return append(ips, a)
}
