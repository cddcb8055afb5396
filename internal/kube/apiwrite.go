package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// What kubectl-pathtrace needs beyond reading pods: any request with a JSON body (creating and
// deleting its pods, reading nodes), and a streamed answer (a pod's log, followed).

// Do sends method path with body (marshalled to JSON unless nil) and decodes a 2xx answer into
// out (unless nil). Any other answer is an *APIStatusError.
func (a *API) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := a.send(ctx, a.client, method, path, rd)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, a.Server, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return statusError(a.Server, method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s%s: %w", method, a.Server, path, err)
		}
	}
	return nil
}

// Stream GETs path and returns the answer's body as it comes, without the per-request timeout
// (a followed log lasts as long as the pod). The caller closes it.
func (a *API) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	cl := &http.Client{Transport: a.client.Transport}
	resp, err := a.send(ctx, cl, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, statusError(a.Server, http.MethodGet, path, resp.StatusCode, data)
	}
	return resp.Body, nil
}

func (a *API) send(ctx context.Context, cl *http.Client, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.Server+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "pathtrace")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := a.auth(ctx, req); err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", a.Server, err)
	}
	return cl.Do(req)
}

func statusError(server, method, path string, code int, body []byte) error {
	var st struct {
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	_ = json.Unmarshal(body, &st)
	return &APIStatusError{Server: server, Method: method, Path: path, Code: code, Message: st.Message}
}

// PathEscape escapes one segment of an API path.
func PathEscape(s string) string { return url.PathEscape(s) }
