import os
import subprocess
import sys

import pytest

from autoenroll.server.config import ConfigError, default_workers, load_config


def test_defaults_give_sqlite_in_the_data_directory(tmp_path):
    config = load_config({"AUTOENROLL_DATA_DIR": str(tmp_path)})
    assert config.effective_database_url == f"sqlite:///{tmp_path}/autoenroll.sqlite3"
    assert config.certificate_days == 365


@pytest.mark.parametrize(
    ("cores", "quota", "workers"),
    [(2, None, 2), (1, None, 1), (64, 2.0, 2), (64, 0.5, 1), (16, 1.5, 2), (16, None, 8), (4, 16.0, 4)],
)
def test_one_worker_per_core_the_server_may_use(cores, quota, workers):
    """More workers than cores only add contention (and Granian warns at every start): one per CPU the
    server may run on, fewer when a container's cgroup allows less, at most 8 (each keeps connections)."""
    assert default_workers(cores, quota) == workers


def test_a_server_pinned_with_taskset_gets_one_worker(tmp_path):
    environ = {"AUTOENROLL_DATA_DIR": str(tmp_path)}
    code = f"from autoenroll.server.config import load_config; print(load_config({environ!r}).workers)"
    cpu = str(min(os.sched_getaffinity(0)))
    pinned = subprocess.run(
        ["taskset", "-c", cpu, sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert pinned.stdout.strip() == "1"


def test_environment_wins_over_the_config_file(tmp_path):
    toml = tmp_path / "autoenroll.toml"
    toml.write_text('certificate_days = 100\npublic_url = "https://ccm.test.com"\n')
    config = load_config({"AUTOENROLL_CONFIG": str(toml), "AUTOENROLL_CERTIFICATE_DAYS": "200"})
    assert config.certificate_days == 200 and config.public_url == "https://ccm.test.com"


def test_expiry_notice_days_are_a_list_largest_first():
    config = load_config({"AUTOENROLL_EXPIRY_NOTICE_DAYS": "7, 60,7,1"})
    assert config.expiry_notice_days == [60, 7, 1]
    assert load_config({}).expiry_notice_days == [30, 15, 2]


def test_ad_networks_are_a_list_of_networks_none_by_default():
    config = load_config({"AUTOENROLL_AD_NETWORKS": "10.0.0.0/8, fd00::/8"})
    assert [str(network) for network in config.ad_networks] == ["10.0.0.0/8", "fd00::/8"]
    assert load_config({}).ad_networks == []


def test_postgresql_url_is_accepted():
    config = load_config({"AUTOENROLL_DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/autoenroll"})
    assert config.effective_database_url.startswith("postgresql://")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"AUTOENROLL_CERTIFICATE_DAYS": "900"}, "AUTOENROLL_CERTIFICATE_DAYS"),
        ({"AUTOENROLL_CERTIFICATE_DAYS": "many"}, "AUTOENROLL_CERTIFICATE_DAYS"),
        ({"AUTOENROLL_PUBLIC_URL": "http://ccm.test.com"}, "AUTOENROLL_PUBLIC_URL"),
        ({"AUTOENROLL_LISTEN": "8443"}, "AUTOENROLL_LISTEN"),
        ({"AUTOENROLL_CA_KEY_TYPE": "dsa-1024"}, "AUTOENROLL_CA_KEY_TYPE"),
        ({"AUTOENROLL_DATABASE_URL": "mysql://x/y"}, "AUTOENROLL_DATABASE_URL"),
        ({"AUTOENROLL_WORKERS": "0"}, "AUTOENROLL_WORKERS"),
        ({"AUTOENROLL_SMTP_HOST": "mail.acme.example"}, "AUTOENROLL_MAIL_FROM"),
        ({"AUTOENROLL_SMTP_HOST": "m", "AUTOENROLL_MAIL_FROM": "a@b", "AUTOENROLL_SMTP_USER": "u"}, "smtp_starttls"),
        ({"AUTOENROLL_EXPIRY_NOTICE_DAYS": "30,0"}, "AUTOENROLL_EXPIRY_NOTICE_DAYS"),
        ({"AUTOENROLL_EXPIRY_NOTICE_DAYS": ","}, "AUTOENROLL_EXPIRY_NOTICE_DAYS"),
        ({"AUTOENROLL_SMTP_PORT": "70000"}, "AUTOENROLL_SMTP_PORT"),
        ({"AUTOENROLL_AD_NETWORKS": "10.0.0.1/8"}, r"AUTOENROLL_AD_NETWORKS\[0\]"),  # host bits set: a typo?
        ({"AUTOENROLL_AD_NETWORKS": "dc.example.com"}, r"AUTOENROLL_AD_NETWORKS\[0\]"),
    ],
)
def test_a_bad_value_names_the_setting(environ, named):
    with pytest.raises(ConfigError, match=named):
        load_config(environ)


def test_unknown_key_in_the_config_file_is_named(tmp_path):
    toml = tmp_path / "autoenroll.toml"
    toml.write_text("certificat_days = 100\n")
    with pytest.raises(ConfigError, match="certificat_days"):
        load_config({"AUTOENROLL_CONFIG": str(toml)})


def test_invalid_setting_stops_the_server_at_start_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_"))}
    env.update(AUTOENROLL_DATA_DIR=str(tmp_path), AUTOENROLL_CERTIFICATE_DAYS="9000")
    result = subprocess.run(
        [sys.executable, "-m", "autoenroll.server.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "AUTOENROLL_CERTIFICATE_DAYS" in result.stderr
    assert "Traceback" not in result.stderr


def server_cli(data_dir, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOENROLL_", "DJANGO_"))}
    env.update(AUTOENROLL_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "autoenroll.server.cli", *argv], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_command_without_the_servers_configuration_says_so_and_leaves_no_database(tmp_path):
    """A new shell without AUTOENROLL_CONFIG exported: the default data directory has no database."""
    result = server_cli(tmp_path, "customers", "list")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no database at" in result.stderr and "AUTOENROLL_CONFIG=(unset)" in result.stderr
    assert "autoenroll-server init" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither a database nor a secret key left behind


@pytest.mark.skipif(os.geteuid() != 0, reason="root running a command on the service account's data directory")
def test_root_is_told_to_run_commands_as_the_data_directorys_owner(tmp_path):
    """As root, `ca rotate` would write a CA key that the service account cannot read: every enrollment
    would then fail. The command refuses and names the user to run it as."""
    data_dir = tmp_path / "lib"
    data_dir.mkdir()
    os.chown(data_dir, 65534, 65534)  # nobody
    for command in (["ca", "list"], ["init"], ["serve"], ["help"], []):
        result = server_cli(data_dir, *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"{data_dir} belongs to nobody" in result.stderr and "runuser -u nobody" in result.stderr
    assert list(data_dir.iterdir()) == []  # refused before writing anything there (secret key, metrics folder)


def test_generated_secret_key_is_private_and_stable(tmp_path):
    config = load_config({"AUTOENROLL_DATA_DIR": str(tmp_path)})
    first = config.secret_key_value()
    assert first == config.secret_key_value()
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
