// Package mail sends feedd's alert e-mails over SMTP. The connection is
// encrypted before anything else is said: implicit TLS on port 465,
// STARTTLS everywhere else, and a server that offers neither gets no
// credentials and no message.
package mail

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	netmail "net/mail"
	"net/smtp"
	"strings"
	"time"
)

// Sentinel errors.
var (
	ErrConfig    = errors.New("mail: bad configuration")
	ErrNoTLS     = errors.New("mail: the SMTP server does not offer STARTTLS; nothing was sent (credentials are never sent in the clear)")
	ErrTLS       = errors.New("mail: TLS with the SMTP server failed")
	ErrAuth      = errors.New("mail: the SMTP server refused the username or password")
	ErrRefused   = errors.New("mail: the SMTP server refused the message")
	ErrReachable = errors.New("mail: the SMTP server could not be reached")
)

// Config is what a Mailer needs. Addr, From and To are required.
type Config struct {
	Addr     string   // FEEDD_SMTP_ADDR, host:port; port 465 means implicit TLS
	Username string   // FEEDD_SMTP_USERNAME; "" sends without AUTH
	Password string   // FEEDD_SMTP_PASSWORD
	From     string   // FEEDD_SMTP_FROM
	To       []string // FEEDD_ALERT_EMAIL
	// RootCAs verifies the server's certificate instead of the system's
	// roots (tests use their own CA); nil: the system's.
	RootCAs *x509.CertPool
	Timeout time.Duration // a whole send; default 30s
	Now     func() time.Time
}

// Mailer sends e-mails to the configured recipients.
type Mailer struct {
	cfg      Config
	host     string
	implicit bool // TLS from the first byte (port 465) instead of STARTTLS
	from     *netmail.Address
	to       []*netmail.Address
}

// New checks cfg and returns a Mailer; errors name the variable at fault.
func New(cfg Config) (*Mailer, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("%w: FEEDD_SMTP_ADDR %q is not host:port", ErrConfig, cfg.Addr)
	}
	from, err := netmail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("%w: FEEDD_SMTP_FROM %q is not an e-mail address", ErrConfig, cfg.From)
	}
	if len(cfg.To) == 0 {
		return nil, fmt.Errorf("%w: FEEDD_ALERT_EMAIL names no recipient", ErrConfig)
	}
	m := &Mailer{cfg: cfg, host: host, from: from, implicit: port == "465"}
	for _, r := range cfg.To {
		a, err := netmail.ParseAddress(r)
		if err != nil {
			return nil, fmt.Errorf("%w: FEEDD_ALERT_EMAIL %q is not an e-mail address", ErrConfig, r)
		}
		m.to = append(m.to, a)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, fmt.Errorf("%w: FEEDD_SMTP_PASSWORD is set without FEEDD_SMTP_USERNAME", ErrConfig)
	}
	if m.cfg.Timeout <= 0 {
		m.cfg.Timeout = 30 * time.Second
	}
	if m.cfg.Now == nil {
		m.cfg.Now = time.Now
	}
	return m, nil
}

// Mail sends one plain-text e-mail with subject and body to every
// recipient, over TLS.
func (m *Mailer) Mail(ctx context.Context, subject, body string) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	msg, err := m.message(subject, body)
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{ServerName: m.host, RootCAs: m.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReachable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if m.implicit {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("%w: %v", ErrTLS, err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReachable, err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("%w: %v", ErrReachable, err)
	}
	if !m.implicit {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return ErrNoTLS
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("%w: %v", ErrTLS, err)
		}
	}
	if m.cfg.Username != "" {
		// PlainAuth itself refuses a connection that is not TLS.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, m.host)); err != nil {
			return fmt.Errorf("%w: %v", ErrAuth, err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("%w: MAIL FROM: %v", ErrRefused, err)
	}
	for _, r := range m.to {
		if err := c.Rcpt(r.Address); err != nil {
			return fmt.Errorf("%w: RCPT TO %s: %v", ErrRefused, r.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("%w: DATA: %v", ErrRefused, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return c.Quit()
}

// message builds the RFC 5322 message. Header values come from feedd's
// configuration and a feed's name, so line breaks are removed from them.
func (m *Mailer) message(subject, body string) ([]byte, error) {
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	_, domain, _ := strings.Cut(m.from.Address, "@")
	to := make([]string, len(m.to))
	for i, a := range m.to {
		to[i] = a.String()
	}
	var b strings.Builder
	header := func(k, v string) {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		b.WriteString(k + ": " + v + "\r\n")
	}
	header("From", m.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", m.cfg.Now().Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	return []byte(b.String()), nil
}
