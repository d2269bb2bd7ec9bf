/* FANN side of the benchmarks (Debian libfann-dev 2.2, float build).
 *
 *   bench_fann online|infer1 [--seconds S] [--hidden sigmoid_symmetric|...]
 *
 * Network 784-256-128-10 (fann_create_standard), hidden and output units
 * FANN_SIGMOID_SYMMETRIC by default (FANN 2.2 has no rectifier:
 * FANN_LINEAR_PIECE_RECT arrived in 2.3), targets one-hot as -1/+1, learning
 * rate 0.01. Online learning is fann_train (one sample, one incremental
 * backprop update); inference is fann_run. Fashion-MNIST is read with
 * mm_dataset_load_idx and converted in memory to a fann_train_data with
 * fann_create_train_from_callback. JSON lines on stdout like bench_mmaint.
 */
#include <fann.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench_common.h"
#include "mm/mm.h"

static const float *g_x;
static const int32_t *g_y;
static unsigned g_dim;

static void FANN_API fill(unsigned int num, unsigned int num_input, unsigned int num_output,
                          fann_type *input, fann_type *output) {
    for (unsigned i = 0; i < num_input; i++) input[i] = g_x[(size_t)num * g_dim + i];
    for (unsigned k = 0; k < num_output; k++) output[k] = (int32_t)k == g_y[num] ? 1.0f : -1.0f;
}

static struct fann_train_data *load(const char *split, unsigned max_n) {
    const char *d = getenv("MM_FASHION_DIR");
    if (!d || !*d) d = "/usr/share/datasets/fashion-mnist";
    const char *p = strcmp(split, "train") == 0 ? "train" : "t10k";
    char img[1024], lab[1024];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", d, p);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", d, p);
    mm_dataset *ds;
    mm_status st = mm_dataset_load_idx(&ds, img, lab);
    if (st != MM_OK) {
        fprintf(stderr, "bench_fann: %s\n", mm_last_error_message());
        exit(1);
    }
    g_x = mm_dataset_features(ds);
    g_y = mm_dataset_labels(ds);
    g_dim = (unsigned)mm_dataset_dim(ds);
    unsigned n = (unsigned)mm_dataset_size(ds);
    if (max_n && n > max_n) n = max_n;
    struct fann_train_data *td = fann_create_train_from_callback(n, g_dim, 10, fill);
    mm_dataset_free(ds);
    if (!td) {
        fprintf(stderr, "bench_fann: fann_create_train_from_callback failed\n");
        exit(1);
    }
    return td;
}

static struct fann *make_net(enum fann_activationfunc_enum hidden) {
    struct fann *ann = fann_create_standard(4, 784, 256, 128, 10);
    if (!ann) {
        fprintf(stderr, "bench_fann: fann_create_standard failed\n");
        exit(1);
    }
    fann_set_activation_function_hidden(ann, hidden);
    fann_set_activation_function_output(ann, FANN_SIGMOID_SYMMETRIC);
    fann_set_learning_rate(ann, 0.01f);
    fann_set_training_algorithm(ann, FANN_TRAIN_INCREMENTAL);
    return ann;
}

typedef struct ctx {
    struct fann *ann;
    struct fann_train_data *td;
    unsigned pos, chunk;
    int train;
} ctx;

static size_t chunk(void *p) {
    ctx *c = p;
    for (unsigned i = 0; i < c->chunk; i++) {
        unsigned k = c->pos;
        c->pos = (c->pos + 1) % c->td->num_data;
        if (c->train)
            fann_train(c->ann, c->td->input[k], c->td->output[k]);
        else
            (void)fann_run(c->ann, c->td->input[k]);
    }
    return c->chunk;
}

int main(int argc, char **argv) {
    const char *bench = NULL;
    double seconds = 1.5;
    enum fann_activationfunc_enum hidden = FANN_SIGMOID_SYMMETRIC;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc) {
            const char *h = argv[++i];
            int found = 0;
            for (int f = 0; f < (int)(sizeof FANN_ACTIVATIONFUNC_NAMES /
                                      sizeof FANN_ACTIVATIONFUNC_NAMES[0]);
                 f++)
                if (!strcasecmp(h, FANN_ACTIVATIONFUNC_NAMES[f] + 5)) { /* skip "FANN_" */
                    hidden = (enum fann_activationfunc_enum)f;
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "bench_fann: unknown activation %s\n", h);
                return 2;
            }
        } else if (argv[i][0] != '-')
            bench = argv[i];
        else {
            fprintf(stderr, "usage: bench_fann online|infer1 [--seconds S] [--hidden NAME]\n");
            return 2;
        }
    }
    if (!bench || (strcmp(bench, "online") && strcmp(bench, "infer1"))) {
        fprintf(stderr, "usage: bench_fann online|infer1 [--seconds S] [--hidden NAME]\n");
        return 2;
    }
    int train = !strcmp(bench, "online");
    struct fann_train_data *td = load(train ? "train" : "test", train ? 20000 : 0);
    struct fann *ann = make_net(hidden);
    ctx c = {ann, td, 0, train ? 500 : 1000, train};
    chunk(&c); /* warm-up */
    size_t n;
    double el;
    double rate = bench_timed_chunks(chunk, &c, seconds, 3, &n, &el);
    printf("{\"impl\": \"fann\", \"bench\": \"%s\", \"hidden\": \"%s\", \"samples_per_s\": %.1f, "
           "\"samples\": %zu, \"seconds\": %.3f}\n",
           bench, FANN_ACTIVATIONFUNC_NAMES[hidden] + 5, rate, n, el);
    fann_destroy(ann);
    fann_destroy_train(td);
    return 0;
}
