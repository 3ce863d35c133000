import time
from pathlib import Path
from tlt.io import storage as st

def test_p(s3_bucket, gcs_bucket, tmp_path):
    files = {f"f{i:04d}.txt": b"t" for i in range(1000)}
    d = tmp_path / "many"; d.mkdir()
    for k, v in files.items(): (d / k).write_bytes(v)
    for b in (s3_bucket, gcs_bucket):
        for w in (1, 8):
            st.configure(max_workers=w)
            t = time.time(); st.upload_tree(d, st.join(b, f"w{w}")); t1 = time.time()
            st.list_files(st.join(b, f"w{w}")); t2 = time.time()
            print(b[:2], w, "upload", round(t1 - t, 2), "list", round(t2 - t1, 2))
