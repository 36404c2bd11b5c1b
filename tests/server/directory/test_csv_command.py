"""`adservers import`: the CSV of the AD Server page from the shell; all or nothing unless told to skip."""

import pytest
from django.core.management import CommandError, call_command

from autoenroll.server.directory.models import ADServer

pytestmark = pytest.mark.django_db

HEADER = "Domain,AD Server Address,AD Server Port,Set as Default,Users Base DN,Login User DN,Login Password,Use SSL\n"
GOOD = 'test.com,10.0.0.1,0,yes,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",Secret-1,yes\n'
GOOD2 = 'test.com,10.0.0.2,636,no,"CN=Users,DC=test,DC=com","CN=ccm,CN=Users,DC=test,DC=com",Secret-2,yes\n'
BAD = 'test.com,10.0.0.3,99999,no,,"CN=ccm,CN=Users,DC=test,DC=com",Secret-3,yes\n'


def test_a_bad_row_imports_nothing_and_is_named(acme, tmp_path, capsys):
    csv = tmp_path / "servers.csv"
    csv.write_text(HEADER + GOOD + BAD + GOOD2)
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("adservers", "import", str(csv), "--customer", "acme")
    assert "line 3" in capsys.readouterr().err
    assert not ADServer.objects.exists()


def test_skip_invalid_imports_the_good_rows(acme, tmp_path, capsys):
    csv = tmp_path / "servers.csv"
    csv.write_text(HEADER + GOOD + BAD + GOOD2)
    call_command("adservers", "import", str(csv), "--customer", "acme", "--skip-invalid")
    assert "2 AD servers imported, 1 invalid rows skipped" in capsys.readouterr().out
    assert ADServer.objects.get(address="10.0.0.1").login_password == "Secret-1"
    assert ADServer.objects.filter(customer=acme, is_default=True).count() == 1
