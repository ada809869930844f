package owner

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

// SourceStore is what the owner surface needs from the database about a
// feed's Instagram accounts.
type SourceStore interface {
	Sources(ctx context.Context, feedID string) ([]model.Source, error)
	FurtherSources(ctx context.Context) (map[string][]model.Source, error)
	SetHeaderSource(ctx context.Context, feedID, sourceID string) error
}

// SourceStatus is one Instagram account of a feed as the owner sees it.
// The first of a feed's sources is its main account ("main"), the one
// Account and Token describe.
type SourceStatus struct {
	ID           string       `json:"id"`
	Username     string       `json:"username"`
	Name         string       `json:"name,omitempty"`
	AccountType  string       `json:"account_type"`
	ProfileURL   string       `json:"profile_url"`
	UserID       string       `json:"user_id"`
	ConnectedAt  time.Time    `json:"connected_at"`
	Status       model.Status `json:"status"`
	StatusReason string       `json:"status_reason,omitempty"`
	// Header: the feed's header shows this account.
	Header    bool         `json:"header"`
	Token     *TokenStatus `json:"token"`
	FetchedAt *time.Time   `json:"fetched_at"`
}

// codeBadSource is the error code of a refused source.
const codeBadSource = "invalid_source"

func sourceStatusOf(src model.Source, header string) SourceStatus {
	a := src.Account
	ss := SourceStatus{
		ID: src.ID, Username: a.Username, Name: a.Name, AccountType: a.AccountType, UserID: a.IGUserID,
		ProfileURL:  "https://www.instagram.com/" + url.PathEscape(a.Username) + "/",
		ConnectedAt: a.ConnectedAt.UTC(), Status: src.Status, StatusReason: src.StatusReason,
		Header: src.ID == header || header == "" && src.ID == model.MainSource,
	}
	if !src.Token.ExpiresAt.IsZero() {
		ts := &TokenStatus{ExpiresAt: src.Token.ExpiresAt.UTC(), ExpiryAssumed: src.Token.ExpiryAssumed, LastRefreshError: src.Token.LastRefreshError}
		if !src.Token.RefreshedAt.IsZero() {
			r := src.Token.RefreshedAt.UTC()
			ts.RefreshedAt = &r
		}
		ss.Token = ts
	}
	if !src.FetchedAt.IsZero() {
		t := src.FetchedAt.UTC()
		ss.FetchedAt = &t
	}
	return ss
}

// withSources lists the feed's accounts (srcs, the main one first) in st
// and makes its status the worst of theirs: a further account that needs
// reconnecting shows as the feed's status, its reason naming the account.
func withSources(st *Status, srcs []model.Source, header string) {
	if st.Account == nil {
		return
	}
	st.Sources = make([]SourceStatus, len(srcs))
	for i, src := range srcs {
		st.Sources[i] = sourceStatusOf(src, header)
	}
	if w, ok := model.Worst(srcs); ok && w.ID != model.MainSource && w.Status != st.Status {
		st.Status = w.Status
		st.StatusReason = "@" + w.Account.Username + " needs reconnecting"
		if w.Status == model.StatusError {
			st.StatusReason = "@" + w.Account.Username + " has a problem"
		}
		if w.StatusReason != "" {
			st.StatusReason += ": " + w.StatusReason
		}
	}
}

// Sources lists the feed's Instagram accounts, the main one first.
func (s *Service) Sources(ctx context.Context, id string) ([]SourceStatus, error) {
	st, err := s.Feed(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Sources == nil {
		return []SourceStatus{}, nil
	}
	return st.Sources, nil
}

// ConnectSource starts the connect flow of a further account for the feed
// and returns the Instagram URL to send the owner to.
func (s *Service) ConnectSource(ctx context.Context, id string, sessionHash []byte) (string, error) {
	if !model.ValidFeedID(id) {
		return "", feedNotFound()
	}
	u, err := s.conn.ConnectSource(ctx, id, sessionHash)
	return u, clientErr(err)
}

// PasteSourceToken adds a further account to the feed with a token made
// elsewhere and returns it.
func (s *Service) PasteSourceToken(ctx context.Context, id, token string) (SourceStatus, error) {
	src, err := s.conn.PasteSourceToken(ctx, id, token)
	if err != nil {
		return SourceStatus{}, clientErr(err)
	}
	f, err := s.store.Feed(ctx, id)
	if err != nil {
		return SourceStatus{}, clientErr(err)
	}
	return sourceStatusOf(src, f.HeaderSource), nil
}

// validSource refuses a source id that cannot be one, naming the field.
func validSource(sourceID string) error {
	if !model.ValidSourceID(sourceID) {
		return web.BadRequest(codeBadSource, "source: %q is not a source id", sourceID)
	}
	return nil
}

// RemoveSource removes a further account from the feed with its posts and
// images.
func (s *Service) RemoveSource(ctx context.Context, id, sourceID string) error {
	if !model.ValidFeedID(id) {
		return feedNotFound()
	}
	if err := validSource(sourceID); err != nil {
		return err
	}
	return clientErr(s.conn.RemoveSource(ctx, id, sourceID))
}

// SetHeaderSource chooses the account the feed's header shows and returns
// the feed's accounts.
func (s *Service) SetHeaderSource(ctx context.Context, id, sourceID string) ([]SourceStatus, error) {
	if !model.ValidFeedID(id) {
		return nil, feedNotFound()
	}
	if err := validSource(sourceID); err != nil {
		return nil, err
	}
	err := s.store.SetHeaderSource(ctx, id, sourceID)
	if errors.Is(err, model.ErrSourceNotFound) {
		return nil, web.BadRequest(codeBadSource, "source: the feed has no source %q", sourceID)
	}
	if err != nil {
		return nil, clientErr(err)
	}
	s.invalidate(id)
	return s.Sources(ctx, id)
}

// --- admin API ---

func (h *Handler) registerSources(g Router) {
	g.GET("/feeds/:id/sources", h.apiSources)
	g.POST("/feeds/:id/sources", h.apiAddSource)
	g.PATCH("/feeds/:id/sources/:source", h.apiPatchSource)
	g.DELETE("/feeds/:id/sources/:source", h.apiRemoveSource)
}

func (h *Handler) apiSources(c *echo.Context) error {
	srcs, err := h.svc.Sources(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"sources": srcs})
}

// apiAddSource adds an account with a pasted token, or without one starts
// the connect flow of a further account and answers its URL.
func (h *Handler) apiAddSource(c *echo.Context) error {
	var in struct {
		AccessToken *string `json:"access_token"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if in.AccessToken == nil {
		u, err := h.svc.ConnectSource(ctx, c.Param("id"), nil)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, map[string]string{"authorize_url": u})
	}
	src, err := h.svc.PasteSourceToken(ctx, c.Param("id"), *in.AccessToken)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, src)
}

func (h *Handler) apiPatchSource(c *echo.Context) error {
	var in struct {
		Header *bool `json:"header"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Header == nil || !*in.Header {
		return web.BadRequest("invalid_header", "header: true is the one value: choose another source to move the header away")
	}
	srcs, err := h.svc.SetHeaderSource(c.Request().Context(), c.Param("id"), c.Param("source"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"sources": srcs})
}

func (h *Handler) apiRemoveSource(c *echo.Context) error {
	if err := h.svc.RemoveSource(c.Request().Context(), c.Param("id"), c.Param("source")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// --- setup pages ---

func (h *Handler) registerSourcePages(g Router) {
	g.POST("/feeds/:id/sources", h.setupAddSource)
	g.GET("/feeds/:id/sources/:source/remove", h.setupConfirmRemoveSource)
	g.POST("/feeds/:id/sources/:source/remove", h.setupRemoveSource)
	g.POST("/feeds/:id/sources/:source/header", h.setupHeaderSource)
}

// setupAddSource adds an account with a pasted token, or sends the owner
// to Instagram's login screen to add (or reconnect) one.
func (h *Handler) setupAddSource(c *echo.Context) error {
	ctx := c.Request().Context()
	if tok := c.FormValue("access_token"); tok != "" {
		src, err := h.svc.PasteSourceToken(ctx, c.Param("id"), tok)
		return h.back(c, feedPage(c), err, "@"+src.Username+" added: its posts appear with the next fetch.")
	}
	u, err := h.svc.ConnectSource(ctx, c.Param("id"), h.sessionBinding(c))
	if err != nil {
		return h.back(c, feedPage(c), err, "")
	}
	return c.Redirect(http.StatusSeeOther, u)
}

func (h *Handler) setupConfirmRemoveSource(c *echo.Context) error {
	sourceID := c.Param("source")
	if err := validSource(sourceID); err != nil {
		return h.back(c, feedPage(c), err, "")
	}
	srcs, err := h.svc.Sources(c.Request().Context(), c.Param("id"))
	if err != nil {
		return h.back(c, "/setup", err, "")
	}
	for _, src := range srcs {
		if src.ID == sourceID && src.ID != model.MainSource {
			return h.confirmPage(confirmation{Action: "sources/" + src.ID + "/remove",
				Title:  "Remove @" + src.Username + " from this feed?",
				Text:   "feedd deletes this account's token, its posts in this feed and their stored images. The feed's other accounts stay.",
				Button: "Remove @" + src.Username})(c)
		}
	}
	return h.back(c, feedPage(c), web.BadRequest(codeBadSource, "source: the feed has no further account %q", sourceID), "")
}

func (h *Handler) setupRemoveSource(c *echo.Context) error {
	if c.FormValue("confirm") != "yes" {
		return h.back(c, feedPage(c)+"/sources/"+url.PathEscape(c.Param("source"))+"/remove", nil, "")
	}
	err := h.svc.RemoveSource(c.Request().Context(), c.Param("id"), c.Param("source"))
	return h.back(c, feedPage(c), err, "Account removed with its posts and images.")
}

func (h *Handler) setupHeaderSource(c *echo.Context) error {
	_, err := h.svc.SetHeaderSource(c.Request().Context(), c.Param("id"), c.Param("source"))
	return h.back(c, feedPage(c), err, "The header shows the chosen account now.")
}
