package server

import (
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/testenv"
	"github.com/feedd/feedd/internal/web"
)

func TestRoutesArePublicByTheirGroup(t *testing.T) {
	f := newFixture(t, nil)
	h := func(c *echo.Context) error { return c.NoContent(204) }
	f.srv.Public().GET("/api/v1/things/:id", h)
	f.srv.Public().Group("/html", web.Gzip).GET("/things/:id", h)
	f.srv.Admin().GET("/things", h)
	f.srv.Setup().GET("/things", h)
	f.srv.Echo().GET("/auth/things", h)
	// A pattern on both kinds of group counts as public, in either order.
	f.srv.Admin().POST("/both", h)
	f.srv.Public().Add("PUT", "/api/admin/both", h)
	f.srv.Public().GET("/setup/both", h)
	f.srv.Setup().POST("/both", h)

	tests := []struct {
		path   string
		public bool
	}{
		{"/api/v1/things/:id", true},
		{"/html/things/:id", true},
		{"/api/admin/things", false},
		{"/setup/things", false},
		{"/auth/things", false},
		{"/healthz", false},
		{"/api/admin/both", true},
		{"/setup/both", true},
	}
	for _, tt := range tests {
		rt, ok := f.srv.routes.load(tt.path)
		if !ok {
			t.Errorf("%s: not in the route table", tt.path)
			continue
		}
		if rt.public != tt.public {
			t.Errorf("%s: public = %v, want %v", tt.path, rt.public, tt.public)
		}
		if rt.label != tt.path {
			t.Errorf("%s: metrics label %q", tt.path, rt.label)
		}
	}

	// What the classification decides on the wire: public routes may be
	// framed, owner routes may not.
	if w := f.do(testenv.Req("GET", "/api/v1/things/1", nil)); w.Code != 204 || w.Header().Get("X-Frame-Options") != "" {
		t.Errorf("public route: %d, X-Frame-Options %q", w.Code, w.Header().Get("X-Frame-Options"))
	}
	if w := f.do(testenv.Req("GET", "/auth/things", nil)); w.Code != 204 || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("owner route: %d, X-Frame-Options %q", w.Code, w.Header().Get("X-Frame-Options"))
	}
}
