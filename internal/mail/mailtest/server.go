// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests: STARTTLS with a certificate of its own CA, PLAIN
// authentication, and a record of what clients sent. Tests only.
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one e-mail the server accepted.
type Message struct {
	From     string
	To       []string
	Data     []byte
	Username string // who authenticated, "" when nobody did
	TLS      bool   // the session was encrypted when the message came
}

// Options shape the server.
type Options struct {
	NoTLS    bool   // offer no STARTTLS (and allow AUTH in the clear, as a careless server would)
	Implicit bool   // TLS from the first byte, as on port 465, instead of STARTTLS
	Username string // the account PLAIN accepts; "" offers no AUTH
	Password string
}

// Server is an SMTP server on loopback.
type Server struct {
	Addr    string         // host:port
	RootCAs *x509.CertPool // trusts the server's certificate

	mu       sync.Mutex
	messages []Message
	authed   []string // every PLAIN attempt's username
	wire     bytes.Buffer
}

// Start runs a server until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{}
	srv := smtp.NewServer(&backend{s: s, opts: opts})
	srv.Domain = "mail.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.AllowInsecureAuth = opts.NoTLS
	if !opts.NoTLS {
		cert, pool := certificate(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.RootCAs = pool
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	var ln net.Listener = &recording{Listener: l, s: s}
	if opts.Implicit && !opts.NoTLS {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// Messages lists the accepted e-mails, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// AuthAttempts counts the PLAIN authentications tried, right or wrong.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.authed)
}

// Received is every byte clients sent before TLS began (after it, the
// bytes are ciphertext): a password must never be in it.
func (s *Server) Received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.wire.Bytes())
}

type recording struct {
	net.Listener
	s *Server
}

func (r *recording) Accept() (net.Conn, error) {
	c, err := r.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, s: r.s}, nil
}

type recordingConn struct {
	net.Conn
	s *Server
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.mu.Lock()
	c.s.wire.Write(p[:n])
	c.s.mu.Unlock()
	return n, err
}

type backend struct {
	s    *Server
	opts Options
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{b: b, c: c}, nil
}

type session struct {
	b    *backend
	c    *smtp.Conn
	msg  Message
	user string
}

func (s *session) AuthMechanisms() []string {
	if s.b.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		s.b.s.mu.Lock()
		s.b.s.authed = append(s.b.s.authed, username)
		s.b.s.mu.Unlock()
		if username != s.b.opts.Username || password != s.b.opts.Password {
			return smtp.ErrAuthFailed
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.b.opts.Username != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.msg = Message{From: from}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.To = append(s.msg.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, tlsOn := s.c.TLSConnectionState()
	s.msg.Data, s.msg.Username, s.msg.TLS = b, s.user, tlsOn
	s.b.s.mu.Lock()
	s.b.s.messages = append(s.b.s.messages, s.msg)
	s.b.s.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.msg = Message{} }
func (s *session) Logout() error { return nil }

// certificate makes a CA and a certificate it signed for 127.0.0.1.
func certificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}
