package mail

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feedd/feedd/internal/mail/mailtest"
)

const password = "s3cret-smtp-password"

func mailer(t *testing.T, srv *mailtest.Server, pass string) *Mailer {
	t.Helper()
	m, err := New(Config{Addr: srv.Addr, Username: "feedd", Password: pass, From: "feedd <feedd@bakery.test>",
		To: []string{"owner@bakery.test", "Second <second@bakery.test>"}, RootCAs: srv.RootCAs, Timeout: 5 * time.Second,
		Now: func() time.Time { return time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMailArrivesOverSTARTTLS(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: password})
	if err := mailer(t, srv, password).Mail(context.Background(), "feedd: reconnect \"Bäckerei\"", "The feed lost its connection.\nhttps://feedd.test/setup/feeds/abc\n"); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages arrived, want 1", len(msgs))
	}
	got := msgs[0]
	if !got.TLS || got.Username != "feedd" {
		t.Errorf("message came with TLS %v, authenticated as %q; want TLS and feedd", got.TLS, got.Username)
	}
	if got.From != "feedd@bakery.test" || strings.Join(got.To, ",") != "owner@bakery.test,second@bakery.test" {
		t.Errorf("envelope from %q to %v", got.From, got.To)
	}
	data := string(got.Data)
	for _, want := range []string{"Subject: =?utf-8?q?feedd:_reconnect_\"B=C3=A4ckerei\"?=\r\n", "To: <owner@bakery.test>, \"Second\" <second@bakery.test>\r\n",
		"Content-Type: text/plain; charset=utf-8\r\n", "\r\n\r\nThe feed lost its connection.\r\nhttps://feedd.test/setup/feeds/abc\r\n"} {
		if !strings.Contains(data, want) {
			t.Errorf("message lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(string(srv.Received()), password) {
		t.Error("the password crossed the wire in the clear")
	}
}

func TestMailOverImplicitTLS(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: password, Implicit: true})
	m := mailer(t, srv, password)
	m.implicit = true // what New sets for port 465, which a test cannot bind
	if err := m.Mail(context.Background(), "s", "b"); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("messages %+v, want one over TLS", msgs)
	}
}

func TestServerWithoutSTARTTLSGetsNoPassword(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{NoTLS: true, Username: "feedd", Password: password})
	err := mailer(t, srv, password).Mail(context.Background(), "s", "b")
	if !errors.Is(err, ErrNoTLS) {
		t.Fatalf("error %v, want ErrNoTLS", err)
	}
	if !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Errorf("error %q does not say why", err)
	}
	if n := srv.AuthAttempts(); n != 0 {
		t.Errorf("%d authentications tried on a server without TLS", n)
	}
	if strings.Contains(string(srv.Received()), "AUTH") || len(srv.Messages()) != 0 {
		t.Errorf("credentials or a message were sent in the clear:\n%s", srv.Received())
	}
}

func TestUntrustedCertificateIsRefused(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: password})
	m := mailer(t, srv, password)
	m.cfg.RootCAs = nil // the system's roots do not know the test CA
	if err := m.Mail(context.Background(), "s", "b"); !errors.Is(err, ErrTLS) {
		t.Fatalf("error %v, want ErrTLS", err)
	}
	if srv.AuthAttempts() != 0 || len(srv.Messages()) != 0 {
		t.Error("credentials or a message went to a server whose certificate was not trusted")
	}
}

func TestWrongPasswordIsAnErrorWithoutThePassword(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: password})
	err := mailer(t, srv, "wrong-"+password).Mail(context.Background(), "s", "b")
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("error %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error holds the password: %q", err)
	}
	if len(srv.Messages()) != 0 {
		t.Error("a message was accepted")
	}
}

func TestHeaderInjectionThroughTheSubjectIsHarmless(t *testing.T) {
	srv := mailtest.Start(t, mailtest.Options{Username: "feedd", Password: password})
	if err := mailer(t, srv, password).Mail(context.Background(), "hi\r\nBcc: evil@attacker.test", "b"); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || strings.Contains(string(msgs[0].Data), "\r\nBcc:") || len(msgs[0].To) != 2 {
		t.Fatalf("a line break in the subject added a header or a recipient: %+v", msgs)
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	ok := Config{Addr: "smtp.test:587", From: "feedd@bakery.test", To: []string{"owner@bakery.test"}}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"addr", func(c *Config) { c.Addr = "smtp.test" }, "FEEDD_SMTP_ADDR"},
		{"from", func(c *Config) { c.From = "not an address" }, "FEEDD_SMTP_FROM"},
		{"to", func(c *Config) { c.To = []string{"nope"} }, "FEEDD_ALERT_EMAIL"},
		{"no to", func(c *Config) { c.To = nil }, "FEEDD_ALERT_EMAIL"},
		{"password alone", func(c *Config) { c.Password = password }, "FEEDD_SMTP_USERNAME"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			_, err := New(c)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), password) {
				t.Fatalf("error %v, want ErrConfig naming %s without the password", err, tt.want)
			}
		})
	}
	if m, err := New(Config{Addr: "smtp.test:465", From: ok.From, To: ok.To}); err != nil || !m.implicit {
		t.Fatalf("port 465: implicit TLS %v, error %v", m != nil && m.implicit, err)
	}
}
