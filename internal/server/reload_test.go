package server

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
)

// servedCertificate dials addr and returns the certificate it presents.
func servedCertificate(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // comparing bytes, not trusting
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// TestReloadCertificateServesTheNewOneToNewConnections: after the files
// are replaced and ReloadCertificate runs, a new HTTPS and a new SIP
// connection get the new certificate; a broken file leaves the old one in
// service.
func TestReloadCertificateServesTheNewOneToNewConnections(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Options{DataDir: dir, HTTPSAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0", AdminAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(t.Context()) })
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	old := servedCertificate(t, srv.HTTPSAddr())
	if !bytes.Equal(old, servedCertificate(t, srv.SIPAddr())) {
		t.Fatal("HTTPS and SIP serve different certificates")
	}

	// A renewal: new files in place, then the reload.
	os.Remove(certFile)
	os.Remove(keyFile)
	if _, err := ensureSelfSigned(certFile, keyFile, "localhost"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(servedCertificate(t, srv.HTTPSAddr()), old) {
		t.Fatal("the new files were served before the reload")
	}
	if err := srv.ReloadCertificate(); err != nil {
		t.Fatal(err)
	}
	renewed := servedCertificate(t, srv.HTTPSAddr())
	if bytes.Equal(renewed, old) {
		t.Fatal("HTTPS still serves the old certificate after the reload")
	}
	if !bytes.Equal(servedCertificate(t, srv.SIPAddr()), renewed) {
		t.Fatal("SIP does not serve the reloaded certificate")
	}

	// A broken key file: the reload fails and the renewed one stays.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadCertificate(); err == nil {
		t.Fatal("a broken key was accepted")
	}
	if !bytes.Equal(servedCertificate(t, srv.HTTPSAddr()), renewed) {
		t.Fatal("a failed reload changed the served certificate")
	}
}
