// Package registrytest runs a real registry in tests: Debian's
// docker-registry (CNCF distribution 2.8), started on 127.0.0.1 from a
// configuration generated in a temporary directory, plain, with TLS from a
// test CA, or with basic authentication (htpasswd), and stopped by its PID
// when the test ends. It is never used at run time.
package registrytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RequireEnv is the variable that turns a missing docker-registry from a
// skip into a failure; .ci/run sets it after installing the package.
const RequireEnv = "GVI_REQUIRE_REGISTRY"

// Config says which registry to start.
type Config struct {
	TLS  bool // serve HTTPS with a certificate from a test CA (Registry.CAFile)
	Auth bool // ask for basic authentication (Registry.User, Registry.Password)
}

// Registry is a running docker-registry.
type Registry struct {
	Addr    string // 127.0.0.1:PORT
	Storage string // the root directory of its file system storage
	// CAFile is the test CA that signed the registry's certificate (PEM),
	// and CAs the same as a pool; both empty without TLS.
	CAFile string
	CAs    *x509.CertPool
	// User and Password are the credentials it accepts, with Auth.
	User, Password string

	cmd    *exec.Cmd
	exited chan error // receives the process's end
	log    string
}

// Binary returns the path of docker-registry, or skips the test (fails
// it when GVI_REQUIRE_REGISTRY=1) when it is absent.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("docker-registry")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("docker-registry not found and %s=1: apt-get install docker-registry", RequireEnv)
		}
		t.Skip("docker-registry not found: registry test skipped (apt-get install docker-registry, or set GVI_REQUIRE_REGISTRY=1 to make this fail)")
	}
	return p
}

// Start starts a registry as cfg says and stops it when t ends.
func Start(t testing.TB, cfg Config) *Registry {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	r := &Registry{Storage: filepath.Join(dir, "storage"), log: filepath.Join(dir, "registry.log")}
	var tlsConf, authConf string
	if cfg.TLS {
		r.CAFile, r.CAs = writeTLS(t, dir)
		tlsConf = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	}
	if cfg.Auth {
		r.User, r.Password = "gvi-test", "s3cret-"+randomHex(t, 8)
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		authConf = fmt.Sprintf("auth:\n  htpasswd:\n    realm: gvi-test\n    path: %s\n", htpasswd)
	}
	// The port is found free, then given to the registry: another process
	// may take it in between, so a start that fails is tried again.
	var lastErr error
	for range 5 {
		r.Addr = freeAddr(t)
		config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: gvi-test-%s
%s%s`, r.Storage, r.Addr, randomHex(t, 8), tlsConf, authConf)
		path := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = r.start(bin, path); lastErr == nil {
			t.Cleanup(r.stop)
			return r
		}
	}
	t.Fatalf("docker-registry did not start: %v\n%s", lastErr, r.Log())
	return nil
}

func (r *Registry) start(bin, config string) error {
	logFile, err := os.Create(r.log)
	if err != nil {
		return err
	}
	defer logFile.Close()
	r.cmd = exec.Command(bin, "serve", config)
	// distribution reads REGISTRY_* variables as configuration: none of
	// the test's may reach it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			r.cmd.Env = append(r.cmd.Env, kv)
		}
	}
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
	client := r.Client()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("it exited: %v", err)
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				r.exited = exited
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.cmd.Process.Kill()
	<-exited
	return fmt.Errorf("it did not answer on %s within 15s", r.Addr)
}

// stop ends the registry by its PID: SIGTERM, then SIGKILL if it lingers.
func (r *Registry) stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.CAFile != "" {
		return "https://" + r.Addr
	}
	return "http://" + r.Addr
}

// Client is an HTTP client that trusts the registry's certificate.
func (r *Registry) Client() *http.Client {
	if r.CAs == nil {
		return &http.Client{Timeout: 5 * time.Second}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: r.Transport()}
}

// Transport is an HTTP transport that trusts the registry's CA (and only
// it).
func (r *Registry) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: r.CAs}
	}
	return t
}

// Log is what the registry wrote.
func (r *Registry) Log() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// DockerConfig writes a Docker configuration directory (for DOCKER_CONFIG)
// whose config.json has user and password for the registry.
func (r *Registry) DockerConfig(t testing.TB, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	data, _ := json.Marshal(map[string]any{"auths": map[string]any{r.Addr: map[string]string{"auth": auth}}})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// BlobPath is where the registry keeps the blob with digest
// sha256:HEX (distribution's file system layout), for tests that damage it.
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Damage changes the blob with digest in place (damage may change bytes,
// not the length), as a failing disk or a hostile registry would serve it:
// the registry does not check what it serves.
func (r *Registry) Damage(t testing.TB, digest string, damage func([]byte)) {
	t.Helper()
	path := r.BlobPath(digest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := len(data)
	damage(data)
	if len(data) != n {
		t.Fatal("Damage changed the blob's length")
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// writeTLS makes a test CA and a certificate it signs for 127.0.0.1 and
// localhost, writes ca.pem, cert.pem and key.pem into dir and returns the
// CA's file and pool.
func writeTLS(t testing.TB, dir string) (string, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gen-vm-image test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		var b bytes.Buffer
		pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", "CERTIFICATE", caDER)
	write("cert.pem", "CERTIFICATE", der)
	write("key.pem", "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return caFile, pool
}
