/* ONNX export/import (include/mm/mm_onnx.h). Built with -DMM_TEST_HAVE_ONNX
 * when the library has the onnx feature; otherwise it checks that the API
 * exists and refuses with MM_E_UNSUPPORTED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "testutil.h"

#ifndef MM_TEST_HAVE_ONNX
START_TEST(test_unavailable) {
    ck_assert_int_eq(mm_onnx_available(), 0);
    mm_model *m;
    MM_ASSERT_OK(mm_model_create_from_spec(&m, "4-3-2:relu", 1));
    MM_ASSERT_STATUS(mm_onnx_export(m, "unused.onnx"), MM_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "without ONNX support"));
    mm_model *got = m;
    MM_ASSERT_STATUS(mm_onnx_import(&got, "unused.onnx"), MM_E_UNSUPPORTED);
    ck_assert_ptr_null(got);
    got = m;
    MM_ASSERT_STATUS(mm_onnx_import_buffer(&got, "x", 1), MM_E_UNSUPPORTED);
    ck_assert_ptr_null(got);
    ck_assert_ptr_nonnull(strstr(mm_last_error_message(), "without ONNX support"));
    mm_model_free(m);
}
END_TEST
#endif

static Suite *onnx_suite(void) {
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("api");
#ifndef MM_TEST_HAVE_ONNX
    tcase_add_test(tc, test_unavailable);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return mm_test_run(onnx_suite()); }
