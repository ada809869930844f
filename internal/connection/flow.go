package connection

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/feedd/feedd/internal/graph"
	"github.com/feedd/feedd/internal/model"
	"github.com/feedd/feedd/internal/web"
)

const (
	stateBytes  = 32 // 256 bits: well over the 128 required
	maxStateLen = 128
	maxCodeLen  = 2048
	maxTokenLen = 2048
	// requiredScope is the only permission feedd asks for.
	requiredScope = "instagram_business_basic"
)

// FlowError is a failed connect, shown to the owner as a page. Title says
// what happened, Action what to do; RedirectURI is set when the owner must
// register it.
type FlowError struct {
	Status      int
	Code        string
	Title       string
	Action      string
	FeedID      string // set when the failure is tied to a known feed (for a link back)
	RedirectURI string
	Err         error // cause, for logs only
}

func (e *FlowError) Error() string {
	if e.Err != nil {
		return "connection: connect: " + e.Code + ": " + e.Err.Error()
	}
	return "connection: connect: " + e.Code
}

// Unwrap returns the cause.
func (e *FlowError) Unwrap() error { return e.Err }

func flowErr(status int, code, title, action string) *FlowError {
	return &FlowError{Status: status, Code: code, Title: title, Action: action}
}

// newState returns a fresh random state and its hash.
func (s *Service) newState() (string, []byte, error) {
	b := make([]byte, stateBytes)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return "", nil, fmt.Errorf("connection: random state: %w", err)
	}
	st := base64.RawURLEncoding.EncodeToString(b)
	return st, hashState(st), nil
}

func hashState(st string) []byte {
	h := sha256.Sum256([]byte("feedd/oauth-state/" + st))
	return h[:]
}

// validStateString rejects anything a state this service issued cannot be.
func validStateString(st string) bool {
	if st == "" || len(st) > maxStateLen {
		return false
	}
	for i := 0; i < len(st); i++ {
		c := st[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ErrAppNotConfigured is returned by Connect when the app id or secret is missing.
var ErrAppNotConfigured = errors.New("connection: Instagram app not configured")

func (s *Service) appNotConfigured() *web.Error {
	return &web.Error{
		Status: http.StatusConflict, Code: "app_not_configured",
		Message: "set " + strings.Join(s.MissingAppVars(), " and ") + " (the Instagram app's id and secret) and register the redirect URI " + s.redirect,
		Err:     ErrAppNotConfigured,
	}
}

// Connect issues a single-use state for the feed and returns the URL to
// send the owner to. sessionHash binds the state to a browser session
// (setup pages); nil binds it to the feed only (admin API).
func (s *Service) Connect(ctx context.Context, feedID string, sessionHash []byte) (string, error) {
	return s.connect(ctx, feedID, sessionHash, false, false)
}

// ConnectOtherAccount is Connect for an owner who wants another account
// than the one logged in on Instagram in this browser: Instagram shows its
// login screen instead of approving for the logged-in account.
func (s *Service) ConnectOtherAccount(ctx context.Context, feedID string, sessionHash []byte) (string, error) {
	return s.connect(ctx, feedID, sessionHash, true, false)
}

// ConnectSource is Connect for a further account of a connected feed: the
// callback adds it as a source (or reconnects the source of that account).
// Instagram shows its login screen, since the account logged in is most
// likely one the feed has already.
func (s *Service) ConnectSource(ctx context.Context, feedID string, sessionHash []byte) (string, error) {
	return s.connect(ctx, feedID, sessionHash, true, true)
}

func (s *Service) connect(ctx context.Context, feedID string, sessionHash []byte, forceReauth, addSource bool) (string, error) {
	if !model.ValidFeedID(feedID) {
		return "", model.ErrNotFound
	}
	if !s.AppConfigured() {
		return "", s.appNotConfigured()
	}
	f, err := s.store.Feed(ctx, feedID)
	if err != nil {
		return "", err
	}
	if addSource && f.Account == nil {
		return "", web.BadRequest("invalid_source", "source: the feed is not connected yet; connect its first account")
	}
	st, h, err := s.newState()
	if err != nil {
		return "", err
	}
	now := s.now()
	if err := s.store.CreateState(ctx, model.OAuthState{
		Hash: h, FeedID: feedID, SessionHash: sessionHash, CreatedAt: now, ExpiresAt: now.Add(StateTTL), AddSource: addSource,
	}); err != nil {
		return "", err
	}
	return s.graph.AuthorizeURL(st, forceReauth), nil
}

// CallbackParams is what Instagram's redirect carries.
type CallbackParams struct {
	State            string
	Code             string
	Error            string
	ErrorReason      string
	ErrorDescription string
}

// Callback completes the connect flow and returns the connected feed's id.
// sessionHash is the browser's session binding (nil when it has none).
// Every failure is a *FlowError and leaves the feed as it was.
func (s *Service) Callback(ctx context.Context, p CallbackParams, sessionHash []byte) (string, error) {
	p.State = strings.TrimSuffix(p.State, "#_")
	p.Code = strings.TrimSuffix(strings.TrimSpace(p.Code), "#_")

	if p.State == "" && p.Error != "" {
		return "", s.deniedErr(p, "")
	}
	if !validStateString(p.State) {
		return "", flowErr(http.StatusBadRequest, "state_invalid",
			"This sign-in link is not one feedd issued.",
			"Open the setup page and press Connect again.")
	}
	st, err := s.store.ConsumeState(ctx, hashState(p.State), s.now())
	switch {
	case errors.Is(err, model.ErrStateNotFound):
		return "", flowErr(http.StatusBadRequest, "state_unknown",
			"This sign-in link is not one feedd issued, or its feed was deleted.",
			"Open the setup page and press Connect again.")
	case errors.Is(err, model.ErrStateUsed):
		return "", flowErr(http.StatusBadRequest, "state_used",
			"This sign-in link was already used.",
			"Each Connect works once. Open the setup page and press Connect again.")
	case errors.Is(err, model.ErrStateExpired):
		return "", flowErr(http.StatusBadRequest, "state_expired",
			"This sign-in link expired (they last 15 minutes).",
			"Open the setup page and press Connect again.")
	case err != nil:
		return "", err
	}
	if st.SessionHash != nil && (sessionHash == nil || subtle.ConstantTimeCompare(st.SessionHash, sessionHash) != 1) {
		return "", &FlowError{Status: http.StatusForbidden, Code: "session_mismatch", FeedID: st.FeedID,
			Title:  "This sign-in was started in another browser or session.",
			Action: "Sign in to the setup page in this browser and press Connect there."}
	}
	if p.Error != "" {
		return "", s.deniedErr(p, st.FeedID)
	}
	if p.Code == "" || len(p.Code) > maxCodeLen {
		return "", &FlowError{Status: http.StatusBadRequest, Code: "code_missing", FeedID: st.FeedID,
			Title:  "Instagram sent no usable authorization code.",
			Action: "Press Connect again."}
	}
	prev, err := s.store.Feed(ctx, st.FeedID)
	if err != nil {
		if errors.Is(err, model.ErrNotFound) {
			return "", flowErr(http.StatusNotFound, "feed_gone", "The feed this sign-in was for has been deleted.", "Create a feed on the setup page and connect it.")
		}
		return "", err
	}

	short, err := s.graph.ExchangeCode(ctx, p.Code)
	if err != nil {
		return "", s.graphFlowErr(err, st.FeedID)
	}
	if len(short.Permissions) > 0 && !slices.Contains(short.Permissions, requiredScope) {
		return "", s.scopeErr(st.FeedID, nil)
	}
	long, err := s.graph.ExchangeLongLived(ctx, short.AccessToken)
	if err != nil {
		return "", s.graphFlowErr(err, st.FeedID)
	}
	prof, err := s.graph.Me(ctx, "", long.AccessToken)
	if err != nil {
		return "", s.graphFlowErr(err, st.FeedID)
	}
	if fe := professionalOnly(prof, st.FeedID); fe != nil {
		return "", fe
	}
	now := s.now()
	tok := model.Token{AccessToken: long.AccessToken, TokenInfo: model.TokenInfo{ObtainedAt: now, ExpiresAt: long.ExpiresAt}}
	if tok.ExpiresAt.IsZero() {
		tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
	}
	acct := accountOf(prof, short.UserID, now)
	if st.AddSource {
		if _, err := s.addSource(ctx, prev.ID, prev.Generation, acct, tok, byOwner); err != nil {
			if !sourceRefused(err) {
				s.keepSource(prev, acct, tok, byOwner, err)
				return "", &FlowError{Status: http.StatusInternalServerError, Code: "store_retrying", FeedID: st.FeedID, Err: err,
					Title:  "Instagram approved the account, but feedd could not save it yet.",
					Action: "feedd keeps trying in the background: open the feed's page in a minute to see the account. If it does not appear, check the server's disk and logs, then press Add another account again."}
			}
			return "", sourceFlowErr(st.FeedID, err)
		}
		return st.FeedID, nil
	}
	if err := s.connectFeed(ctx, prev.ID, prev.Generation, acct, tok, byOwner); err != nil {
		switch {
		case errors.Is(err, model.ErrNotFound):
			return "", flowErr(http.StatusNotFound, "feed_gone", "The feed this sign-in was for has been deleted.", "Create a feed on the setup page and connect it.")
		case errors.Is(err, model.ErrSourceDuplicate):
			return "", sourceFlowErr(st.FeedID, err)
		case errors.Is(err, model.ErrConnectionChanged):
			return "", &FlowError{Status: http.StatusConflict, Code: "feed_changed", FeedID: st.FeedID, Err: err,
				Title:  "The feed was connected or disconnected elsewhere while you signed in; this sign-in changed nothing.",
				Action: "Open the feed's page to see its state, and press Connect again if needed."}
		}
		s.keepConnect(prev, acct, tok, byOwner, err)
		return "", &FlowError{Status: http.StatusInternalServerError, Code: "store_retrying", FeedID: st.FeedID, Err: err,
			Title:  "Instagram approved the connection, but feedd could not save it yet.",
			Action: "feedd keeps trying in the background: open the feed's page in a minute to see it connected. If it stays unconnected, check the server's disk and logs, then press Connect again."}
	}
	return st.FeedID, nil
}

// fetchSoon starts the feed's first fetch right after a connect, so the
// owner's preview and the site show posts within seconds rather than at
// the next poll (which only visits feeds that visitors have requested).
func (s *Service) fetchSoon(feedID string) {
	fs := s.feedService()
	if fs == nil {
		return
	}
	s.goBG("first_fetch", func() {
		ctx, cancel := context.WithTimeout(s.bg, 5*time.Minute)
		defer cancel()
		if err := fs.FetchNow(ctx, feedID); err != nil && s.bg.Err() == nil {
			s.log.Info("first fetch after connect failed", feedAttr(feedID), errAttr(err))
		}
	})
}

func (s *Service) deniedErr(p CallbackParams, feedID string) *FlowError {
	if p.Error == "access_denied" || p.ErrorReason == "user_denied" {
		return &FlowError{Status: http.StatusForbidden, Code: "access_denied", FeedID: feedID,
			Title:  "The connection was cancelled on Instagram; nothing was changed.",
			Action: "To connect, press Connect again and choose Allow."}
	}
	return &FlowError{Status: http.StatusBadRequest, Code: "authorize_error", FeedID: feedID,
		Title:  "Instagram did not complete the sign-in; nothing was changed.",
		Action: "Press Connect again. If it keeps failing, check the app's settings in the Meta App Dashboard."}
}

func (s *Service) scopeErr(feedID string, cause error) *FlowError {
	return &FlowError{Status: http.StatusForbidden, Code: "missing_scope", FeedID: feedID, Err: cause,
		Title:  "The instagram_business_basic permission was not granted, so feedd cannot read the posts.",
		Action: "Press Connect again and allow every permission asked for."}
}

// professionalOnly refuses personal accounts: the Graph API serves Business and Creator accounts only.
func professionalOnly(p graph.Profile, feedID string) *FlowError {
	switch strings.ToUpper(p.AccountType) {
	case "BUSINESS", "MEDIA_CREATOR":
		return nil
	}
	return &FlowError{Status: http.StatusForbidden, Code: "personal_account", FeedID: feedID,
		Title: "This is a personal Instagram account. feedd can only show posts of a professional (Business or Creator) account.",
		Action: "In the Instagram app, open Settings → Account type and tools → Switch to professional account (it is free), " +
			"then press Connect again."}
}

// graphFlowErr turns a Graph failure during connect into an owner-facing page.
func (s *Service) graphFlowErr(err error, feedID string) *FlowError {
	fe := &FlowError{FeedID: feedID, Err: err}
	switch {
	case errors.Is(err, graph.ErrRedirectMismatch):
		fe.Status, fe.Code = http.StatusBadRequest, "redirect_mismatch"
		fe.Title = "Instagram refused the redirect URI: it must match one registered in the app exactly."
		fe.Action = "In the Meta App Dashboard, under Instagram → API setup with Instagram login → Business login settings, " +
			"add this OAuth redirect URI exactly as shown (no trailing slash added), save, then press Connect again."
		fe.RedirectURI = s.redirect
	case errors.Is(err, graph.ErrInvalidApp):
		fe.Status, fe.Code = http.StatusBadRequest, "invalid_app"
		fe.Title = "Instagram answered \"Invalid platform app\": the app id or secret is not the Instagram app's."
		fe.Action = "Check that FEEDD_INSTAGRAM_APP_ID is the *Instagram* app id and FEEDD_INSTAGRAM_APP_SECRET the Instagram app secret " +
			"(App Dashboard → Instagram → API setup with Instagram login), not the Meta app's, then restart feedd and connect again."
	case errors.Is(err, graph.ErrCodeInvalid):
		fe.Status, fe.Code = http.StatusBadRequest, "code_invalid"
		fe.Title = "The authorization code from Instagram expired or was already used."
		fe.Action = "Press Connect again; codes work once and only for a short time."
	case errors.Is(err, graph.ErrPermission):
		return s.scopeErr(feedID, err)
	case errors.Is(err, graph.ErrTokenInvalid):
		fe.Status, fe.Code = http.StatusBadRequest, "token_invalid"
		fe.Title = "Instagram refused the new token."
		fe.Action = "Press Connect again. If it keeps failing, check that the account has a role on the app."
	case errors.Is(err, graph.ErrUnreachable), errors.Is(err, graph.ErrTransient), errors.Is(err, graph.ErrThrottled):
		fe.Status, fe.Code = http.StatusBadGateway, "instagram_unreachable"
		fe.Title = "Instagram could not be reached or did not answer properly; nothing was changed."
		fe.Action = "Wait a minute and press Connect again."
	default:
		fe.Status, fe.Code = http.StatusBadGateway, "instagram_error"
		fe.Title = "Instagram refused the sign-in; nothing was changed."
		fe.Action = "Press Connect again. If it keeps failing, check the app's settings in the Meta App Dashboard."
	}
	return fe
}

func accountOf(p graph.Profile, appUserID string, now time.Time) model.Account {
	if p.ID != "" {
		appUserID = p.ID
	}
	return model.Account{
		AppUserID: appUserID, IGUserID: p.UserID, Username: p.Username, Name: p.Name,
		AccountType: strings.ToUpper(p.AccountType), FollowersCount: p.FollowersCount,
		FollowsCount: p.FollowsCount, MediaCount: p.MediaCount, ConnectedAt: now,
	}
}

// PasteToken connects a feed with a token made elsewhere (App Dashboard
// "Generate token"). Its age is unknown, so one refresh is tried at once:
// success gives the real expiry; a "too young" refusal keeps the token with
// an assumed 60-day expiry and a retry after 24 hours.
func (s *Service) PasteToken(ctx context.Context, feedID, token string) error {
	if !model.ValidFeedID(feedID) {
		return model.ErrNotFound
	}
	token = strings.TrimSpace(token)
	if err := validTokenString(token); err != nil {
		return err
	}
	prev, err := s.store.Feed(ctx, feedID)
	if err != nil {
		return err
	}
	prof, err := s.graph.Me(ctx, "", token)
	if err != nil {
		return pasteGraphErr(err)
	}
	if fe := professionalOnly(prof, feedID); fe != nil {
		return web.BadRequest("personal_account", "access_token: %s %s", fe.Title, fe.Action)
	}
	now := s.now()
	tok := model.Token{AccessToken: token, TokenInfo: model.TokenInfo{ObtainedAt: now}}
	fresh, err := s.graph.Refresh(ctx, prof.UserID, token)
	switch {
	case err == nil:
		tok.AccessToken, tok.ExpiresAt, tok.RefreshedAt = fresh.AccessToken, fresh.ExpiresAt, now
		if tok.ExpiresAt.IsZero() {
			tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
		}
	case errors.Is(err, graph.ErrTokenTooYoung):
		// Not a dead token: it was made less than a day ago.
		tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
		tok.NextRefreshAt = now.Add(MinTokenAge + time.Minute)
	case errors.Is(err, graph.ErrTokenInvalid):
		return pasteGraphErr(err)
	default:
		// /me worked, so the token is alive; learn the expiry on a later try.
		tok.ExpiresAt, tok.ExpiryAssumed = now.Add(AssumedLifetime), true
		tok.NextRefreshAt = now.Add(backoff(1))
		tok.RefreshFailures, tok.LastRefreshError = 1, ownerMessage(err)
	}
	acct := accountOf(prof, "", now)
	if err := s.connectFeed(ctx, prev.ID, prev.Generation, acct, tok, byOwner); err != nil {
		if errors.Is(err, model.ErrSourceDuplicate) {
			return web.BadRequest("invalid_source", "access_token: @%s is already another source of this feed; remove that source first", acct.Username)
		}
		if moot(err) {
			return err
		}
		// Instagram may already have retired the pasted string: keep the new one.
		s.keepConnect(prev, acct, tok, byOwner, err)
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_retrying", Err: err,
			Message: "Instagram accepted the token, but feedd could not save it yet; it keeps trying in the background: reload the page in a minute"}
	}
	return nil
}

func validTokenString(t string) error {
	if t == "" {
		return web.BadRequest("invalid_access_token", "access_token: must not be empty")
	}
	if len(t) > maxTokenLen {
		return web.BadRequest("invalid_access_token", "access_token: longer than %d characters", maxTokenLen)
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return web.BadRequest("invalid_access_token", "access_token: contains spaces or characters a token never has")
		}
	}
	return nil
}

func pasteGraphErr(err error) error {
	switch {
	case errors.Is(err, graph.ErrTokenInvalid):
		return &web.Error{Status: http.StatusBadRequest, Code: "token_invalid", Err: err,
			Message: "access_token: Instagram says this token is invalid or expired; generate a new one"}
	case errors.Is(err, graph.ErrPermission):
		return &web.Error{Status: http.StatusBadRequest, Code: "missing_scope", Err: err,
			Message: "access_token: the token lacks the instagram_business_basic permission"}
	case errors.Is(err, graph.ErrThrottled):
		wait := int(graph.RetryAfter(err).Seconds()) + 1
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "instagram_throttled", Err: err,
			RetryAfter: wait,
			Message:    fmt.Sprintf("Instagram's rate limit holds for about %s more; nothing was changed: paste the token again then", waitText(wait))}
	case errors.Is(err, graph.ErrBadRequest):
		return &web.Error{Status: http.StatusBadRequest, Code: "token_invalid", Err: err,
			Message: "access_token: Instagram refused this token"}
	default:
		return &web.Error{Status: http.StatusBadGateway, Code: "instagram_unreachable", Err: err,
			Message: "Instagram could not be reached; try again in a minute"}
	}
}

// waitText says a wait in seconds the way an owner reads it.
func waitText(sec int) string {
	if sec < 90 {
		return fmt.Sprintf("%d seconds", sec)
	}
	return fmt.Sprintf("%d minutes", (sec+59)/60)
}
