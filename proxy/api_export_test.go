package proxy

// GuardedRoute is a guardedRoute without its handler, for the external
// authorization tests.
type GuardedRoute struct{ Method, Path, Permission string }

// GuardedRoutes lists the server's permission-guarded routes (guardedRoutes).
func (srv *Server) GuardedRoutes() []GuardedRoute {
	var out []GuardedRoute
	for _, r := range srv.guardedRoutes() {
		out = append(out, GuardedRoute{Method: r.Method, Path: r.Path, Permission: r.Permission})
	}
	return out
}
