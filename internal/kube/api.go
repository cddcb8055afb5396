package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
)

// A small client of the Kubernetes API: it reads pods (GET /api/v1/namespaces/NS/pods/NAME and
// /api/v1/pods?fieldSelector=metadata.name=NAME), nothing else. It is not client-go: client-go
// made the static binary four times larger (11.6 MB to 44 MB) for two GETs.

// API asks the Kubernetes API server about pods.
type API struct {
	// Server is the API server's URL.
	Server string
	// Source says where the credentials came from ("kubeconfig /root/.kube/config, context
	// kind-kind", "in-cluster service account").
	Source string
	// Namespace is the kubeconfig context's namespace, or the service account's ("" if none).
	Namespace string

	client *http.Client
	auth   func(ctx context.Context, req *http.Request) error
}

// APIPod is what the API says of a pod.
type APIPod struct {
	Namespace   string
	Name        string
	UID         string
	Node        string // spec.nodeName; "" while unscheduled
	Phase       string // Pending, Running, Succeeded, Failed, Unknown
	HostNetwork bool
	IPs         []netip.Addr // status.podIPs, primary first
	HostIP      netip.Addr
}

// Key is "namespace/name".
func (p APIPod) Key() string { return p.Namespace + "/" + p.Name }

// APIStatusError is an answer of the API server other than 200 (and other than 404 for a
// single pod, which is ErrPodNotFound).
type APIStatusError struct {
	Server  string
	Method  string // "" is GET
	Path    string
	Code    int
	Message string // the Status object's message, if any
}

func (e *APIStatusError) Error() string {
	method := e.Method
	if method == "" {
		method = http.MethodGet
	}
	msg := fmt.Sprintf("%s %s%s: %d %s", method, e.Server, e.Path, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// ErrPodNotFound is Pod's answer for a pod the API does not have.
var ErrPodNotFound = errors.New("pod not found")

// Pod gets one pod. A pod that does not exist is ErrPodNotFound.
func (a *API) Pod(ctx context.Context, namespace, name string) (APIPod, error) {
	var p podJSON
	path := "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(name)
	if err := a.get(ctx, path, &p); err != nil {
		var se *APIStatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			return APIPod{}, ErrPodNotFound
		}
		return APIPod{}, err
	}
	return p.pod(), nil
}

// PodsNamed lists the pods called name in every namespace (which needs the right to list pods
// cluster-wide).
func (a *API) PodsNamed(ctx context.Context, name string) ([]APIPod, error) {
	var l struct {
		Items []podJSON `json:"items"`
	}
	q := url.Values{"fieldSelector": {"metadata.name=" + name}}
	if err := a.get(ctx, "/api/v1/pods?"+q.Encode(), &l); err != nil {
		return nil, err
	}
	out := make([]APIPod, 0, len(l.Items))
	for _, p := range l.Items {
		out = append(out, p.pod())
	}
	return out, nil
}

func (a *API) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pathtrace")
	if err := a.auth(ctx, req); err != nil {
		return fmt.Errorf("credentials for %s: %w", a.Server, err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err // *url.Error: "Get \"https://...\": dial tcp ...: connection refused"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s%s: %w", a.Server, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var st struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &st)
		return &APIStatusError{Server: a.Server, Path: path, Code: resp.StatusCode, Message: st.Message}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s%s: %w", a.Server, path, err)
	}
	return nil
}

// podJSON is the part of a v1 Pod pathtrace reads.
type podJSON struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		NodeName    string `json:"nodeName"`
		HostNetwork bool   `json:"hostNetwork"`
	} `json:"spec"`
	Status struct {
		Phase  string `json:"phase"`
		HostIP string `json:"hostIP"`
		PodIP  string `json:"podIP"`
		PodIPs []struct {
			IP string `json:"ip"`
		} `json:"podIPs"`
	} `json:"status"`
}

func (p podJSON) pod() APIPod {
	out := APIPod{
		Namespace:   p.Metadata.Namespace,
		Name:        p.Metadata.Name,
		UID:         p.Metadata.UID,
		Node:        p.Spec.NodeName,
		Phase:       p.Status.Phase,
		HostNetwork: p.Spec.HostNetwork,
	}
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		for _, x := range out.IPs {
			if x == a {
				return
			}
		}
		out.IPs = append(out.IPs, a)
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	if a, err := netip.ParseAddr(p.Status.HostIP); err == nil {
		out.HostIP = a.Unmap()
	}
	return out
}
