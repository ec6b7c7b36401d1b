package main

// Checks the archives `make images` wrote (IMAGES_DIR, default ../../.local/images): both readers (OCI layout and
// docker manifest.json) see the same image, the config runs the binary as a non-root user on linux/amd64, the layer
// holds a static binary and the passwd entry of that user, and the binary inside runs `--version`.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var images = []string{"agent-operator", "mcp-gateway"}

func imagesDir() string {
	if d := os.Getenv("IMAGES_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", ".local", "images")
}

// readTar returns every regular file of a tar stream by name.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, headers := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, headers
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		headers[hdr.Name] = hdr
		if hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("reading %s: %v", hdr.Name, err)
			}
			files[hdr.Name] = data
		}
	}
}

// blob returns the content of a descriptor's blob after checking its digest and size.
func blob(t *testing.T, files map[string][]byte, d v1.Descriptor) []byte {
	t.Helper()
	path := "blobs/" + d.Digest.Algorithm + "/" + d.Digest.Hex
	data, ok := files[path]
	if !ok {
		t.Fatalf("blob %s is missing from the archive", path)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != d.Digest.Hex || int64(len(data)) != d.Size {
		t.Fatalf("blob %s: content does not match its digest or size", path)
	}
	return data
}

func TestImageArchives(t *testing.T) {
	for _, name := range images {
		t.Run(name, func(t *testing.T) { checkImage(t, name) })
	}
}

func checkImage(t *testing.T, name string) {
	archive := filepath.Join(imagesDir(), name+".tar")
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatalf("%v: run `make images` first", err)
	}
	t.Logf("%s: %d bytes", archive, len(raw))
	files, _ := readTar(t, bytes.NewReader(raw))

	// The OCI image layout.
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", got)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].MediaType != types.OCIManifestSchema1 {
		t.Fatalf("index.json should name one OCI manifest: %+v", index.Manifests)
	}
	ref := index.Manifests[0].Annotations["io.containerd.image.name"]
	if !strings.Contains(ref, "/"+name+":") {
		t.Fatalf("image name %q does not name %s", ref, name)
	}
	var manifest v1.Manifest
	if err := json.Unmarshal(blob(t, files, index.Manifests[0]), &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var config v1.ConfigFile
	if err := json.Unmarshal(blob(t, files, manifest.Config), &config); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(manifest.Layers) != 1 || len(config.RootFS.DiffIDs) != 1 {
		t.Fatalf("want one layer, got %d (diff ids %d)", len(manifest.Layers), len(config.RootFS.DiffIDs))
	}
	compressed := blob(t, files, manifest.Layers[0])

	// The docker-save view names the same blobs.
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil || len(docker) != 1 {
		t.Fatalf("manifest.json: %v %+v", err, docker)
	}
	if docker[0].Config != "blobs/sha256/"+manifest.Config.Digest.Hex ||
		len(docker[0].Layers) != 1 || docker[0].Layers[0] != "blobs/sha256/"+manifest.Layers[0].Digest.Hex ||
		len(docker[0].RepoTags) != 1 || docker[0].RepoTags[0] != ref {
		t.Fatalf("manifest.json does not match the OCI manifest: %+v", docker[0])
	}

	// Both go-containerregistry readers (what crane push and most tools use) load it.
	tagless, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("as docker archive: %v", err)
	}
	if cn, err := tagless.ConfigName(); err != nil || cn != manifest.Config.Digest {
		t.Fatalf("docker archive reader sees config %v (%v), want %v", cn, err, manifest.Config.Digest)
	}
	dir := t.TempDir()
	for path, data := range files {
		if err := os.MkdirAll(filepath.Join(dir, "layout", filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "layout", path), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lp, err := layout.ImageIndexFromPath(filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatalf("as OCI layout: %v", err)
	}
	if img, err := lp.Image(index.Manifests[0].Digest); err != nil {
		t.Fatalf("OCI layout image: %v", err)
	} else if d, _ := img.Digest(); d != index.Manifests[0].Digest {
		t.Fatalf("OCI layout digest %v, want %v", d, index.Manifests[0].Digest)
	}

	// The config: linux/amd64, a non-root numeric user, the binary as entrypoint.
	if config.Architecture != "amd64" || config.OS != "linux" {
		t.Fatalf("platform %s/%s, want linux/amd64", config.OS, config.Architecture)
	}
	uid, gid, ok := strings.Cut(config.Config.User, ":")
	if !ok {
		t.Fatalf("user %q should be numeric uid:gid (Kubernetes runAsNonRoot can only verify numbers)", config.Config.User)
	}
	uidN, err1 := strconv.Atoi(uid)
	gidN, err2 := strconv.Atoi(gid)
	if err1 != nil || err2 != nil || uidN == 0 {
		t.Fatalf("user %q should be a non-root numeric uid:gid", config.Config.User)
	}
	entrypoint := "/usr/local/bin/" + name
	if len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != entrypoint || len(config.Config.Cmd) != 0 {
		t.Fatalf("entrypoint %q cmd %q, want [%s] and no cmd", config.Config.Entrypoint, config.Config.Cmd, entrypoint)
	}

	// The layer: its diff id, the passwd entry of the user, a static executable.
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	uncompressed, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(uncompressed)
	if "sha256:"+hex.EncodeToString(sum[:]) != config.RootFS.DiffIDs[0].String() {
		t.Fatalf("layer diff id does not match the config")
	}
	layerFiles, layerHeaders := readTar(t, bytes.NewReader(uncompressed))
	if !strings.Contains(string(layerFiles["etc/passwd"]), ":"+uid+":"+gid+":") {
		t.Fatalf("etc/passwd has no entry for %s: %q", config.Config.User, layerFiles["etc/passwd"])
	}
	if len(layerFiles["etc/ssl/certs/ca-certificates.crt"]) == 0 {
		t.Fatalf("the image has no CA certificates")
	}
	bin := strings.TrimPrefix(entrypoint, "/")
	hdr, ok := layerHeaders[bin]
	if !ok || hdr.Mode&0o111 == 0 || hdr.Uid != 0 {
		t.Fatalf("%s should be an executable owned by root (not writable by the user): %+v", bin, hdr)
	}
	exe, err := elf.NewFile(bytes.NewReader(layerFiles[bin]))
	if err != nil {
		t.Fatalf("%s is not ELF: %v", bin, err)
	}
	if exe.Machine != elf.EM_X86_64 {
		t.Fatalf("%s is built for %v", bin, exe.Machine)
	}
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked: it cannot run on a scratch base", bin)
		}
	}

	// Run it: inside the unpacked image (chroot, as the image's user) when this test runs as root, else directly.
	root := filepath.Join(dir, "rootfs")
	for path, data := range layerFiles {
		mode := os.FileMode(layerHeaders[path].Mode) & os.ModePerm
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(root, bin), "--version")
	how := "directly"
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(entrypoint, "--version")
		cmd.Dir = "/"
		cmd.Env = config.Config.Env
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: uint32(uidN), Gid: uint32(gidN)},
		}
		how = "in a chroot of the image as " + config.Config.User
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version (%s): %v\n%s", entrypoint, how, err, out)
	}
	version := config.Config.Labels["org.opencontainers.image.version"]
	if want := name + " " + version; strings.TrimSpace(string(out)) != want {
		t.Fatalf("%s --version printed %q, want %q", entrypoint, out, want)
	}
	t.Logf("%s --version ran %s: %s", entrypoint, how, strings.TrimSpace(string(out)))
}
