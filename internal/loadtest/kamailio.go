package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to create msilo's database
)

// Kamailio is how to start the peer server: the binary, the configuration
// (bench/kamailio), and where Kamailio's own SQLite schema files are.
type Kamailio struct {
	Bin       string // kamailio binary
	Config    []byte // kamailio.cfg
	TLSConfig []byte // tls.cfg, naming cert.pem and key.pem beside it
	// SchemaDir holds Kamailio's db_sqlite schema files (standard-create.sql,
	// msilo-create.sql); Debian's kamailio-sqlite-modules puts them in
	// /usr/share/kamailio/db_sqlite.
	SchemaDir string
	// ShmMiB is Kamailio's shared memory (-m): connections, TLS state and
	// transactions live there, so it bounds how many devices it can hold.
	ShmMiB int
}

// KamailioSchemaDir is where Debian's kamailio-sqlite-modules puts the
// schema files.
const KamailioSchemaDir = "/usr/share/kamailio/db_sqlite"

// Spawn starts Kamailio in a new folder holding its configuration, a fresh
// certificate and a fresh msilo database, listening for SIP over TLS on a
// free loopback port, and returns once it completes a TLS handshake there.
// The bench accounts need no provisioning: Kamailio authenticates nobody.
func (k Kamailio) Spawn(ctx context.Context, domain string, progress io.Writer) (*Spawned, error) {
	dir, err := os.MkdirTemp("", "sealbench-kamailio-*")
	if err != nil {
		return nil, err
	}
	sp := &Spawned{Dir: dir}
	sp.Domain = domain
	fail := func(err error) (*Spawned, error) {
		sp.Stop()
		return nil, err
	}
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfg, k.Config, 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.cfg"), k.TLSConfig, 0o644); err != nil {
		return fail(err)
	}
	sp.CAFile = filepath.Join(dir, "cert.pem")
	if err := writeSelfSigned(sp.CAFile, filepath.Join(dir, "key.pem")); err != nil {
		return fail(fmt.Errorf("kamailio certificate: %w", err))
	}
	db := filepath.Join(dir, "msilo.db")
	if err := createMsiloDB(ctx, db, k.SchemaDir); err != nil {
		return fail(err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return fail(err)
	}
	sp.SIP = ports[0]
	hop := ports[1] // msilo sends stored messages through Kamailio itself (kamailio.cfg)
	shm := k.ShmMiB
	if shm <= 0 {
		shm = 512
	}
	// --atexit=no: the tls module's advice for libssl 1.1 and later (no C
	// atexit handlers touching shared memory that is already gone).
	args := []string{"-f", cfg, "-DD", "-E", "--atexit=no", "-Y", dir, "-w", dir,
		"-m", strconv.Itoa(shm), "-M", "16",
		"-l", "tls:" + sp.SIP, "-l", "tcp:" + hop,
		"-A", `DBURL="sqlite:///` + db + `"`, "-A", `MSILO_HOP="sip:` + hop + `;transport=tcp"`}
	sp.log, err = os.OpenFile(filepath.Join(dir, "kamailio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	sp.cmd = exec.Command(k.Bin, args...)
	sp.cmd.Stdout, sp.cmd.Stderr = sp.log, sp.log
	if err := sp.cmd.Start(); err != nil {
		sp.cmd = nil
		return fail(fmt.Errorf("starting %s: %w", k.Bin, err))
	}
	sp.PID = sp.cmd.Process.Pid
	sp.exited = make(chan error, 1)
	go func() { sp.exited <- sp.cmd.Wait() }()
	pem, err := os.ReadFile(sp.CAFile)
	if err != nil {
		return fail(err)
	}
	tlsCfg, err := clientTLS(pem, sp.SIP)
	if err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !handshakes(ctx, sp.SIP, tlsCfg) {
		select {
		case err := <-sp.exited:
			sp.cmd = nil
			log, _ := os.ReadFile(sp.log.Name())
			return fail(fmt.Errorf("%s exited before it was ready (%v):\n%s", k.Bin, err, tail(log, 2000)))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(fmt.Errorf("%s not answering TLS on %s after 30 s; its log is %s", k.Bin, sp.SIP, sp.log.Name()))
		}
	}
	// Kamailio forks its workers before it listens; wait until the tree
	// has stopped growing, so that the /proc figures cover all of them.
	n := 0
	for range 20 {
		pids, err := processTree(sp.PID)
		if err != nil {
			return fail(err)
		}
		if len(pids) == n {
			break
		}
		n = len(pids)
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(progress, "sealbench: kamailio pid %d (%d processes) on %s in %s\n", sp.PID, n, sp.SIP, dir)
	return sp, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// handshakes reports whether a TLS handshake with addr succeeds.
func handshakes(ctx context.Context, addr string, cfg *tls.Config) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// createMsiloDB makes msilo's SQLite database from Kamailio's own schema
// files: the version table first, then the silo table and its version row.
func createMsiloDB(ctx context.Context, path, schemaDir string) error {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, name := range []string{"standard-create.sql", "msilo-create.sql"} {
		schema, err := os.ReadFile(filepath.Join(schemaDir, name))
		if err != nil {
			return fmt.Errorf("kamailio's msilo schema (Debian package kamailio-sqlite-modules): %w", err)
		}
		if _, err := db.ExecContext(ctx, string(schema)); err != nil {
			return fmt.Errorf("creating msilo's database from %s: %w", name, err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT table_version FROM version WHERE table_name = 'silo'").Scan(&n); err != nil {
		return fmt.Errorf("msilo's database: no version row for table silo: %w", err)
	}
	return nil
}

// writeSelfSigned writes an ECDSA P-256 certificate for 127.0.0.1 and
// localhost (the kind sealpostd makes for itself) and its key (0600).
func writeSelfSigned(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"sealbench kamailio"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, 7),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // the file is the devices' CA too
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600),
	)
}
