/* A tiny host program built only from the installed headers and pkg-config. */
#include <mm/mm.h>
#include <stdio.h>

int main(void) {
    if (mm_version_number() != MM_VERSION_NUMBER) {
        fprintf(stderr, "header/library version mismatch\n");
        return 1;
    }
    mm_model *m;
    if (mm_model_create_from_spec(&m, "4-8-3:relu", 1) != MM_OK) {
        fprintf(stderr, "create: %s\n", mm_last_error_message());
        return 1;
    }
    mm_optimizer *o;
    if (mm_optimizer_create(&o, m, MM_OPTIM_ADAM) != MM_OK) return 1;
    float x[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int32_t y = 2;
    double first = 0, loss = 0;
    for (int i = 0; i < 50; i++) {
        if (mm_optimizer_step(o, x, &y, NULL, 1, &loss) != MM_OK) return 1;
        if (i == 0) first = loss;
    }
    mm_optimizer_free(o);
    mm_model_free(m);
    printf("mmaint %s consumer ok: loss %.4f -> %.4f\n", mm_version_string(), first, loss);
    return loss < first ? 0 : 1;
}
