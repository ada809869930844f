package main

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/feed"
)

// feeddHandler mounts the feed handler the way feedd does.
// TODO(feed): switch to internal/server's public group (production
// middleware) once that package lands.
func feeddHandler(svc *feed.Service) (http.Handler, error) {
	e := echo.New()
	feed.NewHandler(svc).Register(e.Group(""))
	return e, nil
}
