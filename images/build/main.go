// Command imagebuild writes a container image FROM scratch without a container engine: one layer holding a static
// binary, the files of a root file system folder (passwd and group with the non-root user 65532) and any extra files,
// with the entrypoint, user and labels set in the image config. The result is a single tar file that is both an OCI
// image layout (index.json, oci-layout, blobs/) and a `docker save` archive (manifest.json), so `docker load`,
// `podman load`, `ctr images import`, `kind load image-archive`, `skopeo copy oci-archive:` and `crane push` all read it.
//
// The output is reproducible: every timestamp is SOURCE_DATE_EPOCH (default 0), owners and modes are fixed and the
// layer is gzip-compressed deterministically, so the same inputs give the same digests.
//
//	imagebuild --name agent-operator --binary target/.../agent-operator --rootfs images/rootfs \
//	  --file /etc/ssl/certs/ca-certificates.crt=etc/ssl/certs/ca-certificates.crt \
//	  --ref ghcr.io/agentorchestrator/agent-operator:0.1.0 --out .local/images/agent-operator.tar
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user the images run as (the uid distroless calls "nonroot"); the chart's securityContext uses it.
const NonRoot = "65532:65532"

type fileFlags []string

func (f *fileFlags) String() string     { return strings.Join(*f, ",") }
func (f *fileFlags) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var files fileFlags
	name := flag.String("name", "", "binary name; the entrypoint is /usr/local/bin/NAME")
	binary := flag.String("binary", "", "path of the static binary")
	rootfs := flag.String("rootfs", "", "folder whose files are copied to / (owned by root)")
	ref := flag.String("ref", "", "image reference recorded in the archive, e.g. ghcr.io/org/name:1.0.0")
	version := flag.String("version", "", "org.opencontainers.image.version label")
	source := flag.String("source", "", "org.opencontainers.image.source label")
	out := flag.String("out", "", "output tar file")
	flag.Var(&files, "file", "extra file SRC=DEST (DEST relative to /); repeatable")
	flag.Parse()
	if *name == "" || *binary == "" || *ref == "" || *out == "" {
		fail(errors.New("--name, --binary, --ref and --out are required"))
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		fail(err)
	}
	entries, err := collect(*name, *binary, *rootfs, files)
	if err != nil {
		fail(err)
	}
	img, err := build(*name, entries, epoch, map[string]string{
		"org.opencontainers.image.title":   *name,
		"org.opencontainers.image.version": *version,
		"org.opencontainers.image.source":  *source,
	})
	if err != nil {
		fail(err)
	}
	if err := writeArchive(*out, *ref, img, epoch); err != nil {
		fail(err)
	}
	digest, _ := img.Digest()
	info, _ := os.Stat(*out)
	fmt.Printf("%s: %s %s (%d bytes)\n", *out, *ref, digest, info.Size())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "imagebuild:", err)
	os.Exit(1)
}

func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// entry is one regular file of the layer.
type entry struct {
	dest string // relative to /, slash-separated
	src  string
	mode int64
}

func collect(name, binary, rootfs string, files []string) ([]entry, error) {
	var entries []entry
	if rootfs != "" {
		err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(rootfs, p)
			if err != nil {
				return err
			}
			entries = append(entries, entry{dest: filepath.ToSlash(rel), src: p, mode: 0o644})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		src, dest, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--file %q: want SRC=DEST", f)
		}
		entries = append(entries, entry{dest: strings.TrimPrefix(dest, "/"), src: src, mode: 0o644})
	}
	entries = append(entries, entry{dest: "usr/local/bin/" + name, src: binary, mode: 0o755})
	sort.Slice(entries, func(i, j int) bool { return entries[i].dest < entries[j].dest })
	return entries, nil
}

// layerTar writes the layer: every parent folder once, then the files, all owned by root with a fixed time.
func layerTar(entries []entry, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, e := range entries {
		var parents []string
		for d := path.Dir(e.dest); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(e.src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.dest, Mode: e.mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func build(name string, entries []entry, epoch time.Time, labels map[string]string) (v1.Image, error) {
	raw, err := layerTar(entries, epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "imagebuild: " + name, Comment: "static binary on scratch"},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.User = NonRoot
	cfg.Config.Entrypoint = []string{"/usr/local/bin/" + name}
	cfg.Config.Cmd = nil
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cfg.Config.Labels = map[string]string{}
	for k, v := range labels {
		if v != "" {
			cfg.Config.Labels[k] = v
		}
	}
	return mutate.ConfigFile(img, cfg)
}

// writeArchive writes the OCI layout and the docker manifest.json side by side in one tar, as `docker save` does
// since Docker 25.
func writeArchive(out, ref string, img v1.Image, epoch time.Time) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	type blob struct {
		path string
		data []byte
	}
	blobs := []blob{{blobPath(digest), manifest}, {blobPath(configName), config}}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		blobs = append(blobs, blob{blobPath(d), data})
		layerPaths = append(layerPaths, blobPath(d))
	}
	tag := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			Annotations: map[string]string{
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   blobPath(configName),
		"RepoTags": []string{ref},
		"Layers":   layerPaths,
	}})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	write := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, b := range blobs {
		if err := write(b.path, b.data); err != nil {
			return err
		}
	}
	for _, file := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
	} {
		if err := write(file.name, file.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
