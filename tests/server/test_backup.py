"""What a backup carries of the settings, and what `restore` says of them (the whole backup and restore of
real servers under load: tests/agent/test_backup.py)."""

from __future__ import annotations

import io
import tarfile

import pytest

from autoenroll.server import backup
from autoenroll.server.config import load_config

LOST = {
    "AUTOENROLL_DATA_DIR": "/srv/lost",
    "AUTOENROLL_PUBLICATION_URL": "http://pki.example.com",
    "AUTOENROLL_PUBLIC_URL": "https://ccm.example.com",
    "AUTOENROLL_SMTP_PASSWORD": "mail-secret",
    "AUTOENROLL_CA_PASSPHRASE": "never-carried",
    "AUTOENROLL_CERTIFICATE_DAYS": "200",
}


def test_the_settings_given_are_carried_not_the_defaults_nor_the_passphrase():
    carried = backup._carried_settings(load_config(LOST))
    assert carried == {
        "data_dir": "/srv/lost",
        "publication_url": "http://pki.example.com",
        "public_url": "https://ccm.example.com",
        "smtp_password": "mail-secret",
        "certificate_days": 200,
    }


def test_restore_names_what_differs_secrets_by_name_only():
    carried = backup._carried_settings(load_config(LOST))
    here = load_config({"AUTOENROLL_DATA_DIR": "/srv/new", "AUTOENROLL_PUBLIC_URL": "https://ccm.example.com"})
    differences = backup._differences(here, carried)
    assert differences == [
        "certificate_days: 200 in the backup, 365 here",
        "publication_url: 'http://pki.example.com' in the backup, 'http://localhost:8080' here: the certificates "
        "and CRLs already issued name the backup's URL: serve it there too",
        "smtp_password (a secret)",
    ]
    assert not backup._differences(load_config(LOST), carried)


@pytest.mark.parametrize("filters", [True, False], ids=["python-3.11.4+", "debian-12-python-3.11.2"])
def test_restore_extracts_plain_files_only_with_or_without_tarfile_filters(tmp_path, monkeypatch, filters):
    """Debian 12's Python 3.11.2 has no `filter=` for tarfile: the restore makes the same refusals itself."""
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "b.tar"
    with tarfile.open(archive, "w") as tar:
        key = tarfile.TarInfo("keys/ca.key")
        key.size, key.mode = 3, 0o600
        tar.addfile(key, io.BytesIO(b"key"))
        for name, kind in [
            ("keys/link", tarfile.SYMTYPE),
            ("/etc/x", tarfile.REGTYPE),
            ("files/../../x", tarfile.REGTYPE),
        ]:
            bad = tarfile.TarInfo(name)
            bad.type, bad.linkname = kind, "/etc/passwd"
            tar.addfile(bad, io.BytesIO(b""))
    dest = tmp_path / "out"
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        backup._extract(tar, members[0], dest)
        for member in members[1:]:
            with pytest.raises(backup.BackupError, match="not a plain file"):
                backup._extract(tar, member, dest)
    assert (dest / "keys/ca.key").read_bytes() == b"key"
    assert (dest / "keys/ca.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.tar", "ca.key", "keys", "out"]


def test_a_backup_into_a_missing_directory_names_the_directory(tmp_path):
    config = load_config({"AUTOENROLL_DATA_DIR": str(tmp_path), "AUTOENROLL_CA_PASSPHRASE": "x-pass-phrase"})
    with pytest.raises(backup.BackupError, match=f"{tmp_path / 'backups'} is not a directory"):
        backup.backup(config, tmp_path / "backups" / "today.backup")
