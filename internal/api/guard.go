package api

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Access is who may use the API. Zero fields get defaults:
//
//	Token:        "" (kill and replay refused: no one holds a token)
//	Hosts:        none beyond loopback names and addresses
//	EventClients: 16
type Access struct {
	// Token is the secret that kill and replay need: in an Authorization
	// header ("Bearer TOKEN", what the control commands send, reading it
	// from the data dir) or in the cookie the dashboard gets from
	// GET /?token=TOKEN (the link `supervisor dashboard` prints). It can
	// also be set later, with Server.SetToken.
	Token string
	// Hosts are names, besides loopback ones, that requests may address
	// the API by (the Host header, any port): a page on another name, even
	// one that resolves here (DNS rebinding), is refused.
	Hosts []string
	// EventClients caps the open GET /events streams; one more is refused.
	EventClients int
}

// CookieName is the dashboard's token cookie.
const CookieName = "robust_token"

func (a Access) withDefaults() Access {
	if a.EventClients <= 0 {
		a.EventClients = 16
	}
	return a
}

// hostAllowed: the Host header names a loopback address, localhost (or a
// name under .localhost) or one of a.Hosts, with any port.
func (a Access) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	return slices.ContainsFunc(a.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// authorized: the request carries the token, as a bearer or the cookie.
func authorized(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	got := ""
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = b
	} else if c, err := r.Cookie(CookieName); err == nil {
		got = c.Value
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// guard refuses, before any handler:
//   - a request addressed to a Host that is not this machine's by name
//     (DNS rebinding: a page of evil.example whose name now resolves to
//     127.0.0.1 sends Host: evil.example);
//   - a state-changing request from a page of another origin;
//   - a state-changing request without the token.
//
// It turns GET /?token=TOKEN into the dashboard's cookie (HttpOnly,
// SameSite=Strict: no other site's page ever sends it) and a redirect to
// /, so the token leaves the address bar.
func (s *Server) guard(h http.Handler) http.Handler {
	a := s.access
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := s.currentToken()
		if !a.hostAllowed(r.Host) {
			http.Error(w, fmt.Sprintf("Host %q is not a name of this supervisor: use 127.0.0.1 or localhost, or start it with --http-host %s", r.Host, hostOnly(r.Host)), http.StatusMisdirectedRequest)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Has("token") {
			if token == "" || subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(token)) != 1 {
				http.Error(w, "wrong dashboard token: `supervisor dashboard` prints the link", http.StatusForbidden)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: CookieName, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" {
				if u, err := url.Parse(o); err != nil || u.Host != r.Host {
					http.Error(w, "cross-origin request refused", http.StatusForbidden)
					return
				}
			}
			if !authorized(r, token) {
				http.Error(w, "this needs the supervisor's token: the control commands read it from --data-dir; the dashboard gets it from the link `supervisor dashboard` prints", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// SetToken sets the token kill and replay need (Access.Token).
func (s *Server) SetToken(token string) { s.token.Store(&token) }

func (s *Server) currentToken() string {
	if t := s.token.Load(); t != nil {
		return *t
	}
	return ""
}
